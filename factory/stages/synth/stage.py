"""The synth stage's `run`: read the corpus, rewrite it through the generator, write the synthetic corpus."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from factory.artifacts import Corpus
from factory.documents import read_records, write_parts
from factory.errors import InputError
from factory.generate import Generator
from factory.gvendi.targeted import targeted_filter
from factory.logs import progress
from factory.stage import Artifact, StepContext
from factory.stages.synth.rephrase import Config, rephrase

__all__ = ["KIND", "run"]

KIND = "corpus"


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext,
        generator: Generator | None = None) -> dict[str, float]:
    """Rewrite the corpus's documents by quality tier; write the synthetic documents and their counts.

    `generator` is a runtime handle for callers that already hold one (tests, notebooks); by default it is
    built from `config.generator`.
    """
    if "corpus" not in inputs:
        raise InputError("synth needs an input named 'corpus' (a curate artifact)")
    if set(inputs) - {"corpus"}:
        raise InputError(f"synth takes one input, 'corpus'; got also {sorted(set(inputs) - {'corpus'})} (the generator "
                         "is synth.generator: model_dir for a local model, base_url for a server)")
    corpus = inputs["corpus"]
    files = Corpus.of(inputs, "corpus").files()
    if not files:
        raise InputError(f"{Path(corpus.path) / 'documents'}: no *.jsonl.gz document files")
    ctx.log_dataset(name="corpus", uri=corpus.uri, digest=corpus.fingerprint, context="synthesis",
                    profile={"files": len(files)})
    owned = generator is None
    if generator is None:
        generator = config.generator.open()

    stats: Counter = Counter()
    try:
        records = read_records(files, stats, bad_line="docs_bad_json", bad_file="unreadable_files")
        docs = rephrase(progress(records, desc="synth"), config, generator, stats)
        if config.targeted.enabled:  # keep the rewrites that fill the sparse gradient clusters of the source
            reference = read_records(files, Counter())
            docs = targeted_filter(docs, reference, config.targeted, ctx.scratch, stats)
        parts = write_parts(docs, output / "documents", config.docs_per_part)
    finally:
        if owned and hasattr(generator, "close"):
            generator.close()

    metrics = {k: float(v) for k, v in sorted(stats.items())}
    metrics["parts"] = float(parts)
    (output / "stats.json").write_text(json.dumps(
        {"generator": generator.model_id, "tasks_by_tier": {str(k): list(v) for k, v in config.tasks_by_tier.items()},
         "counts": dict(sorted(stats.items())), "parts": parts}, indent=2) + "\n")
    ctx.log.info("synthesized", generator=generator.model_id, **{k: round(v, 4) for k, v in stats.items()})
    return metrics
