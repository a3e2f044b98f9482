"""The synth stage: rewrite a curated corpus with an LLM, Nemotron-CC style (see `factory.synth.rephrase`).

Input "corpus" (a curate artifact): `documents/*.jsonl.gz`, records with `metadata.quality_tier`.
Optional input "model" (a pretrain or release artifact): the local model to generate with; without it,
`generator.model_dir` (kind "transformers") or `generator.base_url` (kind "openai") says which.
Output (a corpus, so tokenize and mix read it like curate's):
    documents/part-NNNNN.jsonl.gz   {"id", "text", "metadata": {"source_id", "task", "quality_tier", ...}}
    stats.json                      documents read, skipped, rewritten and dropped, per reason and task

Run alone (outside the pipeline):

    from factory.stage import Artifact, StepContext
    import factory.synth as synth
    config = synth.Config(generator={"kind": "openai", "base_url": "http://localhost:8000", "model": "m"})
    synth.run(config, {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("synth"))
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from factory.documents import document_files, read_records, write_parts
from factory.errors import InputError
from factory.logs import progress
from factory.stage import Artifact, StepContext
from factory.generate import GenerationParams, Generator, OpenAIGenerator, TransformersGenerator
from factory.synth.rephrase import Config, GeneratorSettings, make_generator, rephrase, tiny

__all__ = ["Config", "KIND", "run", "GenerationParams", "Generator", "GeneratorSettings", "OpenAIGenerator",
           "TransformersGenerator", "make_generator", "rephrase", "tiny"]

KIND = "corpus"


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext,
        generator: Generator | None = None) -> dict[str, float]:
    """Rewrite the corpus's documents by quality tier; write the synthetic documents and their counts.

    `generator` is a runtime handle for callers that already hold one (tests, notebooks); by default it is
    built from `config.generator`.
    """
    if "corpus" not in inputs:
        raise InputError("synth needs an input named 'corpus' (a curate artifact)")
    corpus = inputs["corpus"]
    files = document_files(corpus.path)
    if not files:
        raise InputError(f"{Path(corpus.path) / 'documents'}: no *.jsonl.gz document files")
    ctx.log_dataset(name="corpus", uri=corpus.uri, digest=corpus.fingerprint, context="synthesis",
                    profile={"files": len(files)})
    owned = generator is None
    if generator is None:
        model = inputs.get("model")
        generator = make_generator(config.generator, _model_dir(model), model.uri if model else None)

    stats: Counter = Counter()
    try:
        records = read_records(files, stats, bad_line="docs_bad_json", bad_file="unreadable_files")
        docs = rephrase(progress(records, desc="synth"), config, generator, stats)
        parts = write_parts(docs, output / "documents", config.docs_per_part)
    finally:
        if owned and hasattr(generator, "close"):
            generator.close()

    metrics = {k: float(v) for k, v in sorted(stats.items())}
    metrics["parts"] = float(parts)
    (output / "stats.json").write_text(json.dumps(
        {"generator": generator.model_id, "tasks_by_tier": {str(k): list(v) for k, v in config.tasks_by_tier.items()},
         "counts": dict(sorted(stats.items())), "parts": parts}, indent=2) + "\n")
    ctx.log.info("synthesized", generator=generator.model_id, **{k: int(v) for k, v in stats.items()})
    return metrics


def _model_dir(model: Artifact | None) -> Path | None:
    """The model folder inside a pretrain artifact (`model/`) or a release artifact (the folder itself)."""
    if model is None:
        return None
    path = Path(model.path)
    return path / "model" if (path / "model" / "config.json").is_file() else path
