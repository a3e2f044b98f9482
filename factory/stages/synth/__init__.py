"""The synth stage: rewrite a curated corpus with an LLM, Nemotron-CC style (see `factory.stages.synth.rephrase`).

Input "corpus" (a curate artifact): `documents/*.jsonl.gz`, records with `metadata.quality_tier`.
The generator is `generator.model_dir` (kind "transformers": a local model folder) or `generator.base_url`
(kind "openai": any OpenAI-compatible server).
Output (a corpus, so tokenize and mix read it like curate's):
    documents/part-NNNNN.jsonl.gz   {"id", "text", "metadata": {"source_id", "task", "quality_tier", ...}}
    stats.json                      documents read, skipped, rewritten and dropped, per reason and task

Run alone (outside the pipeline):

    from factory.stage import Artifact, StepContext
    from factory.stages import synth
    config = synth.Config(generator={"kind": "openai", "base_url": "http://localhost:8000", "model": "m"})
    synth.run(config, {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("synth"))
"""

from factory.lazy import lazy_exports
from factory.stages.synth.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.synth.stage"})

__all__ = ["Config", "run"]
