"""Optional LLM cleanup of math pages (Nemotron-CC-Math): a model rewrites each page's extracted text into clean
text with its LaTeX intact, through the generator interface (`factory.generate`: a local transformers model or
any OpenAI-compatible server).

The prompt is a file (`prompts/cleanup.txt` by default, or `cleanup.prompt_file`) with one `{document}` slot.
A page is cut at paragraph ends into chunks of at most `max_chars`; each chunk is rewritten with greedy
decoding, and a rewrite is used only when it keeps at least `keep_equations` of the chunk's equations (every
one by default) and is not empty; otherwise the chunk stays as extracted. So a model that drops or garbles a
formula costs the page its cleanup, never its math.

    docs, counts = cleanup_math_documents(docs, config.math.chain.cleanup)   # math pages rewritten in place
    counts == {"pages": 3, "chunks": 5, "rewritten": 4, "kept_lost_equations": 1, "kept_empty": 0}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from factory.curate.math.config import MathCleanup
from factory.curate.math.mask import latex_spans
from factory.curate.math.paths import is_math
from factory.errors import InputError
from factory.generate import GenerationParams, Generator

PROMPTS = Path(__file__).parent / "prompts"
PLACEHOLDER = "{document}"


def load_prompt(config: MathCleanup) -> str:
    """The prompt template (the packaged one unless `prompt_file` names another), checked for its one slot."""
    path = Path(config.prompt_file) if config.prompt_file else PROMPTS / "cleanup.txt"
    try:
        template = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"stages.curate.math.chain.cleanup.prompt_file: cannot read {path}: {error}") from None
    if template.count(PLACEHOLDER) != 1:
        raise InputError(f"stages.curate.math.chain.cleanup.prompt_file: {path} must contain {PLACEHOLDER} exactly once, "
                         f"where the page's text goes (found {template.count(PLACEHOLDER)})")
    return template


def chunks(text: str, max_chars: int) -> list[str]:
    """`text` cut at blank lines into chunks of at most `max_chars` (a longer paragraph is a chunk of its own,
    so an equation or a code block is never split)."""
    out: list[str] = []
    current = ""
    for para in re.split(r"\n{2,}", text):
        if current and len(current) + 2 + len(para) > max_chars:
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


def _normalise(latex: str) -> str:
    return re.sub(r"\s+", "", latex)


def equations_kept(original: str, rewrite: str) -> float:
    """Share of the distinct `$...$`/`$$...$$` equations of `original` found in `rewrite`, whitespace ignored
    (delimiters may change between inline and display); 1.0 when `original` has none."""
    wanted = {_normalise(s.strip("$")) for s in latex_spans(original)}
    wanted.discard("")
    if not wanted:
        return 1.0
    found = {_normalise(s.strip("$")) for s in latex_spans(rewrite)}
    return len(wanted & found) / len(wanted)


def cleanup_math_documents(docs: Sequence, config: MathCleanup, generator: Generator | None = None) -> tuple[list, dict[str, int]]:
    """Rewrite the math pages among `docs` in place (others untouched); (docs, counts of what happened).

    `generator` is a runtime handle for callers that hold one; by default it is built from `config`."""
    template = load_prompt(config)
    math_docs = [d for d in docs if is_math(d)]
    counts = {"pages": len(math_docs), "chunks": 0, "rewritten": 0, "kept_lost_equations": 0, "kept_empty": 0}
    if not math_docs:
        return list(docs), counts
    owned = generator is None
    generator = generator or config.generator.open()
    try:
        pieces = [chunks(d.text, config.max_chars) for d in math_docs]
        flat = [c for cs in pieces for c in cs]
        prompts = [[{"role": "user", "content": template.replace(PLACEHOLDER, c)}] for c in flat]
        answers = iter(generator.generate(prompts, GenerationParams(max_new_tokens=config.max_new_tokens, temperature=0.0)))
    finally:
        if owned and hasattr(generator, "close"):
            generator.close()
    counts["chunks"] = len(flat)
    for doc, cs in zip(math_docs, pieces):
        out = []
        for chunk in cs:
            answer = next(answers).strip()
            if not answer:
                counts["kept_empty"] += 1
                out.append(chunk)
            elif equations_kept(chunk, answer) < config.keep_equations:
                counts["kept_lost_equations"] += 1
                out.append(chunk)
            else:
                counts["rewritten"] += 1
                out.append(answer)
        doc.text = "\n\n".join(out)
    return list(docs), counts
