"""A generative judge: a model behind the generator interface reads a prompt file and gives strict verdicts.

    with Judge(JudgeConfig(generator={"kind": "openai", "base_url": url, "model": "judge"}, mode="pairwise",
                           both_orders=True)) as judge:
        verdicts = judge.judge(questions, responses, references)    # one Verdict per response
    [v.reward for v in verdicts]                                    # in [0, 1], None when malformed
    malformed_counts(verdicts)                                      # {"no_verdict": 2}
    judge.check_budget(verdicts, "stages.evaluate.benchmarks[0]")    # one line when above config.error_budget

Score mode judges each response alone (against `references[i]` when its prompt reads `{reference}`); pairwise mode
compares each response with `references[i]`, a reference response, shown as A then, with `both_orders`, as B too.
All prompts of one call go to the generator in one batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

from factory.errors import InputError
from factory.generate.params import GenerationParams, Generator
from factory.judge.config import JudgeConfig
from factory.judge.prompt_file import JudgePrompt, read_judge_prompt
from factory.judge.verdicts import (
    Comparison,
    Verdict,
    check_error_budget,
    combine_orders,
    parse_pairwise,
    parse_score,
    verdict_format,
)

__all__ = ["Judge", "model_digest", "model_identity"]


class Judge:
    """A judge opened from its config (the generator is opened on `__enter__`, or given, e.g. already open)."""

    def __init__(self, config: JudgeConfig, generator: Generator | None = None) -> None:
        if config.from_input and generator is None:
            raise InputError("judge: generator.model_dir is unset, so the judge is the step's `judge` input; open "
                             "`config.with_model(<the input's model folder>)`")
        self.config = config
        self.prompt: JudgePrompt = read_judge_prompt(config.prompt_name, config.mode)
        self.generator = generator
        self._opened = False
        self.params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                       reasoning=config.reasoning)
        self.format = verdict_format(config.mode, config.scale)

    def __enter__(self) -> Self:
        if self.generator is None:
            self.generator = self.config.generator.open()
            self._opened = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._opened:
            close = getattr(self.generator, "close", None)
            if close is not None:
                close()
            self.generator, self._opened = None, False

    def judge(self, questions: Sequence[str], responses: Sequence[str],
              references: Sequence[str] | None = None) -> list[Verdict]:
        """One verdict per response. Pairwise needs a reference response per question; a score prompt that reads
        `{reference}` needs a reference answer, and one that does not refuses references rather than drop them."""
        if self.generator is None:
            raise RuntimeError("open the judge first: `with Judge(config) as judge:`")
        if len(questions) != len(responses) or (references is not None and len(references) != len(responses)):
            raise ValueError(f"judge: {len(questions)} questions, {len(responses)} responses and "
                             f"{'no' if references is None else len(references)} references do not line up")
        if not responses:
            return []
        wants = self.config.mode == "pairwise" or self.prompt.reads_reference
        if wants and references is None:
            raise InputError(f"judge prompt {self.prompt.name!r} compares with a reference "
                             f"{'response' if self.config.mode == 'pairwise' else 'answer'}; give one per question")
        if not wants and references is not None:
            raise InputError(f"judge prompt {self.prompt.name!r} has no {{reference}}: it would not read the "
                             "references given; use a prompt that reads them (e.g. correctness) or give none")
        if self.config.mode == "score":
            prompts = [self.prompt.messages(question=q, response=r, verdict_format=self.format,
                                            **({"reference": references[i]} if references is not None else {}))
                       for i, (q, r) in enumerate(zip(questions, responses))]
            replies, cut = self._ask(prompts)
            return [_cut(parse_score(reply, self.config.scale), c) for reply, c in zip(replies, cut)]
        assert references is not None
        first = [self.prompt.messages(question=q, response_a=r, response_b=ref, verdict_format=self.format)
                 for q, r, ref in zip(questions, responses, references)]
        second = [self.prompt.messages(question=q, response_a=ref, response_b=r, verdict_format=self.format)
                  for q, r, ref in zip(questions, responses, references)] if self.config.both_orders else []
        replies, cut = self._ask(first + second)
        comparisons = [_cut(parse_pairwise(reply, self.config.scale), c) for reply, c in zip(replies, cut)]
        n = len(responses)
        return [combine_orders(comparisons[i], comparisons[n + i] if second else None) for i in range(n)]

    def _ask(self, prompts: list[list[dict[str, str]]]) -> tuple[list[str], list[bool]]:
        """(the judge's replies, whether each hit the token limit: the generator's finish reasons, when it gives them)."""
        replies = self.generator.generate(prompts, self.params)  # type: ignore[union-attr]
        if len(replies) != len(prompts):
            raise RuntimeError(f"judge generator returned {len(replies)} replies for {len(prompts)} prompts")
        finishes = list(getattr(self.generator, "finish_reasons", None) or [])
        return replies, [f == "length" for f in finishes] if len(finishes) == len(replies) else [False] * len(replies)

    def check_budget(self, verdicts: Sequence[Verdict], where: str) -> None:
        """Fail with one line naming `where` when more verdicts are malformed than `error_budget` allows."""
        check_error_budget(verdicts, self.config.error_budget, where)

    def describe(self) -> dict[str, Any]:
        """Who judged: the model (name, and for a local folder the digest of its files), the prompt file and its
        digest, the mode and scale; what eval.json records and the card names."""
        settings = self.config.generator
        if settings.kind == "openai":
            model: dict[str, Any] = {"kind": "openai", "model": settings.model, "base_url": settings.base_url}
        else:
            model = {"kind": "transformers", **model_identity(Path(settings.model_dir))}  # type: ignore[arg-type]
        return {**model, "prompt": self.prompt.name, "prompt_digest": self.prompt.digest, "mode": self.config.mode,
                "scale": list(self.config.scale) if self.config.scale else None, "both_orders": self.config.both_orders}


def _cut(parsed: Verdict | Comparison, truncated: bool) -> Verdict | Comparison:
    """A malformed reply that hit the token limit is malformed for that reason (the verdict line never came)."""
    return replace(parsed, malformed="truncated") if truncated and parsed.malformed else parsed


def model_identity(folder: Path) -> dict[str, str]:
    """Who a local judge model is: for a factory artifact's `model/` (a step's input), the step that made it and the
    model it brought in (an import_model step's source), identified by the artifact's fingerprint (its lineage);
    for any other folder, its name and the digest of its files."""
    manifest = folder / ".." / "manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        step = made.get("stage") or folder.resolve().parent.name
        imported = folder / ".." / "import.json"
        record = json.loads(imported.read_text()) if imported.is_file() else {}
        # named as the import names its base model: the Hub id, else the source folder's name
        source = record.get("hub_id") or (Path(record["source"].rstrip("/")).name if record.get("source") else None)
        return {"model": f"{step} ({source})" if source else step, "step": step, **({"source": source} if source else {}),
                "digest": model_digest(folder)}
    return {"model": folder.resolve().name, "digest": model_digest(folder)}


def model_digest(folder: Path) -> str:
    """A local model folder's identity: the fingerprint of the artifact it belongs to when it is a factory artifact's
    `model/` (its manifest beside it), else the sha256 of every file's name and bytes."""
    manifest = folder / ".." / "manifest.json"
    if manifest.is_file():
        fingerprint = json.loads(manifest.read_text()).get("fingerprint")
        if fingerprint:
            return f"fingerprint:{fingerprint}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()
