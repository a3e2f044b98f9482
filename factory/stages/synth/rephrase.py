"""Synthetic rephrasing after Nemotron-CC: rewrite documents with an LLM, by quality tier.

Low-quality documents (tiers 0-1 by default) are rephrased in an encyclopedic, Wikipedia-like style, which
keeps their tokens while cleaning their form; high-quality documents (tiers 3-4) are turned into diverse
question-answer pairs, a distilled version, extracted knowledge and a knowledge list, which adds new
views of the best content. Long documents are cut into chunks within a budget, each chunk is rewritten,
and a document's rewritten chunks are joined again.

    from factory.stages.synth.rephrase import Config, rephrase
    config = Config(generator={"kind": "openai", "base_url": "http://vllm:8000", "model": "nvidia/model"})
    for doc in rephrase(docs, config, config.generator.open()):
        ...   # {"id", "text", "metadata": {"source_id", "task", "quality_tier", "generator", "prompt", ...}}
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from factory.errors import SpecError
from factory.generate import GenerationParams, Generator, flatten_chat
from factory.stages.synth.config import Config
from factory.stages.synth.prompts import PromptTemplate, load_prompt
from factory.tiers import TIERS

# ---------------------------------------------------------------------------------------------- chunking

def chunk_text(text: str, budget: int, measure: Callable[[str], int] = len) -> list[str]:
    """Cut `text` into chunks of at most `budget` (as `measure` counts), at paragraph ends where possible,
    then at sentence ends, and only as a last resort inside a sentence."""
    if measure(text) <= budget:
        return [text.strip()] if text.strip() else []
    pieces: list[tuple[str, int]] = []
    for para in re.findall(r"[^\n]*\n*", text):  # each paragraph keeps its trailing newlines
        if not para:
            continue
        size = measure(para)
        if size <= budget:
            pieces.append((para, size))
            continue
        for sentence in re.split(r"(?<=[.!?])(?=\s)", para):
            size = measure(sentence)
            if size <= budget:
                pieces.append((sentence, size))
                continue
            # An overlong "sentence" (a table, a run-on list) goes word by word, each word with its spaces.
            for word in re.findall(r"\S*\s*", sentence):
                size = measure(word)
                if size <= budget:
                    pieces.append((word, size))
                elif word:  # a word longer than the budget (a URL, a base64 blob): equal slices that fit
                    step = math.ceil(len(word) / math.ceil(size / budget))
                    pieces.extend((word[i : i + step], measure(word[i : i + step])) for i in range(0, len(word), step))
    chunks, current, used = [], "", 0
    for piece, size in pieces:
        if current and used + size > budget:
            chunks.append(current)
            current, used = "", 0
        current += piece
        used += size
    chunks.append(current)
    return [c.strip() for c in chunks if c.strip()]


# ------------------------------------------------------------------------------------------ post-processing

_LEAD_IN = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|here(?:'s| is| are))\b[^\n]{0,200}:[ \t]*\n+", re.IGNORECASE)
_QUESTION = re.compile(r"^[\s>#*\-\d.)]*\**\s*(?:question\s*\d*\s*[:.)]|q\s*\d*\s*:)\**\s*(.*)$", re.IGNORECASE)
_ANSWER = re.compile(r"^[\s>#*\-\d.)]*\**\s*(?:answer\s*\d*\s*[:.)]|a\s*\d*\s*:)\**\s*(.*)$", re.IGNORECASE)


def clean_output(text: str, echoes: Iterable[str], document: str) -> str:
    """A completion without what the model repeated of its prompt: a leading copy of the prompt (or its
    instruction), of the document itself, and a chatty lead-in line such as "Sure! Here is the text:"."""
    out = text.strip()
    for echo in sorted((e.strip() for e in echoes if e and e.strip()), key=len, reverse=True):
        if out.startswith(echo):
            out = out[len(echo) :].lstrip()
    doc = document.strip()
    if doc and out.startswith(doc):
        out = out[len(doc) :].lstrip()
    return _LEAD_IN.sub("", out, count=1).strip()


def parse_qa(text: str) -> list[tuple[str, str]]:
    """Question-answer pairs from a completion in any of the usual layouts ("Question: / Answer:", "Q1: / A1:",
    numbered, bulleted, bold); lines that follow a question or an answer continue it."""
    pairs: list[tuple[str, str]] = []
    question: list[str] | None = None
    answer: list[str] | None = None

    def close() -> None:
        if question is not None and answer is not None:
            q, a = _tidy("\n".join(question)), _tidy("\n".join(answer))
            if q and a:
                pairs.append((q, a))

    for line in text.splitlines():
        if m := _QUESTION.match(line):
            close()
            question, answer = [m.group(1)], None
        elif (m := _ANSWER.match(line)) and question is not None and answer is None:
            answer = [m.group(1)]
        elif answer is not None:
            answer.append(line)
        elif question is not None:
            question.append(line)
    close()
    return pairs


def _tidy(text: str) -> str:
    return text.strip().strip("*").strip()


def format_qa(pairs: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)


# ------------------------------------------------------------------------------------------------ rephrase

@dataclass
class _Job:
    """One (source document, task): its chunks' prompts, and the cleaned outputs once generated."""

    source_id: str
    tier: int
    task: str
    chunks: list[str]
    prompts: list[Any]
    echoes: list[list[str]]
    outputs: list[str] = field(default_factory=list)


def rephrase(docs: Iterable[dict], config: Config, generator: Generator, stats: Counter | None = None) -> Iterator[dict]:
    """Rewrite every document whose quality tier has tasks; yield one new document per (document, task).

    Counts go into `stats` (documents read, skipped and why, outputs kept and dropped and why, per task).
    Output documents come in input order, tasks in config order.
    """
    stats = Counter() if stats is None else stats
    prompts = {task: load_prompt(task, config.prompt_dir) for task in config.tasks()}
    params = config.generation
    measure = _measure(config, generator)
    buffer: list[_Job] = []
    selected = 0
    for doc in docs:
        stats["docs_read"] += 1
        tier = _tier(doc, stats)
        if tier is None:
            continue
        tasks = config.tasks_by_tier.get(tier, ())
        if not tasks:
            stats["docs_no_task_for_tier"] += 1
            continue
        if config.max_docs is not None and selected >= config.max_docs:
            break
        selected += 1
        stats["docs_selected"] += 1
        chunks = chunk_text(doc["text"], config.chunk_size, measure)
        stats["chunks"] += len(chunks)
        for task in tasks:
            buffer.append(_job(str(doc["id"]), tier, task, chunks, prompts[task], config.use_chat))
        if sum(len(job.prompts) for job in buffer) >= config.request_batch:
            yield from _finish(buffer, config, generator, params, prompts, stats)
            buffer = []
    if buffer:
        yield from _finish(buffer, config, generator, params, prompts, stats)


def _tier(doc: Any, stats: Counter) -> int | None:
    """The document's quality tier, or None (counted) when the record cannot be used."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), (str, int)) or not isinstance(doc.get("text"), str):
        stats["docs_malformed"] += 1
        return None
    if not doc["text"].strip():
        stats["docs_empty"] += 1
        return None
    metadata = doc.get("metadata")
    tier = metadata.get("quality_tier") if isinstance(metadata, dict) else None
    if isinstance(tier, float) and tier.is_integer():
        tier = int(tier)
    if isinstance(tier, bool) or not isinstance(tier, int) or tier not in TIERS:
        stats["docs_no_quality_tier"] += 1
        return None
    return tier


def _measure(config: Config, generator: Generator) -> Callable[[str], int]:
    if config.chunk_unit == "chars":
        return len
    count = getattr(generator, "count_tokens", None)
    if count is None:
        raise SpecError(f"synth.chunk_unit: 'tokens' needs a generator with a local tokenizer; "
                        f"{type(generator).__name__} has none, use 'chars'")
    return count


def _job(source_id: str, tier: int, task: str, chunks: list[str], prompt: PromptTemplate, use_chat: bool) -> _Job:
    job = _Job(source_id, tier, task, chunks, [], [])
    for chunk in chunks:
        messages = prompt.messages(chunk)
        plain = flatten_chat(messages)
        job.prompts.append(messages if use_chat else plain)
        # What a model may repeat before its answer: the whole prompt, the user message, or the instruction.
        job.echoes.append([plain, messages[-1]["content"], prompt.before_document, prompt.preamble])
    return job


def _finish(jobs: list[_Job], config: Config, generator: Generator, params: GenerationParams,
            prompts: dict[str, PromptTemplate], stats: Counter) -> Iterator[dict]:
    """Generate every chunk of `jobs` in one call, clean the outputs, yield the surviving documents."""
    outputs = iter(generator.generate([p for job in jobs for p in job.prompts], params))
    for job in jobs:
        for chunk, echoes in zip(job.chunks, job.echoes):
            text, dropped = _postprocess(next(outputs), job.task, chunk, echoes, config.min_output_chars)
            if dropped:
                stats[f"outputs_dropped_{dropped}"] += 1
                stats[f"outputs_dropped_{job.task}"] += 1
                continue
            stats["outputs_kept"] += 1
            job.outputs.append(text)
        if not job.outputs:
            stats["docs_dropped"] += 1
            continue
        stats["docs_out"] += 1
        stats[f"docs_out_{job.task}"] += 1
        yield {
            "id": f"{job.source_id}/{job.task}",
            "text": "\n\n".join(job.outputs),
            "metadata": {"source_id": job.source_id, "task": job.task, "quality_tier": job.tier,
                         "generator": generator.model_id, "prompt": prompts[job.task].name,
                         "prompt_digest": prompts[job.task].digest,
                         "chunks": len(job.chunks), "chunks_kept": len(job.outputs)},
        }


def _postprocess(raw: str, task: str, chunk: str, echoes: list[str], min_chars: int) -> tuple[str, str | None]:
    """(clean text, None) or ("", why it was dropped)."""
    text = clean_output(raw, echoes, chunk)
    if not text:
        return "", "empty"
    if task == "diverse_qa":
        pairs = parse_qa(text)
        if not pairs:
            return "", "no_qa_pairs"
        text = format_qa(pairs)
    if len(text) < min_chars:
        return "", "too_short"
    return text, None
