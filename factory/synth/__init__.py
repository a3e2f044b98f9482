"""The synth stage: rewrite a curated corpus with an LLM, Nemotron-CC style (see `factory.synth.rephrase`).

Input "corpus" (a curate artifact): `documents/*.jsonl.gz`, records with `metadata.quality_tier`.
The generator is `generator.model_dir` (kind "transformers": a local model folder) or `generator.base_url`
(kind "openai": any OpenAI-compatible server).
Output (a corpus, so tokenize and mix read it like curate's):
    documents/part-NNNNN.jsonl.gz   {"id", "text", "metadata": {"source_id", "task", "quality_tier", ...}}
    stats.json                      documents read, skipped, rewritten and dropped, per reason and task

Run alone (outside the pipeline):

    from factory.stage import Artifact, StepContext
    import factory.synth as synth
    config = synth.Config(generator={"kind": "openai", "base_url": "http://localhost:8000", "model": "m"})
    synth.run(config, {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("synth"))
"""

from factory.generate import GenerationParams, Generator, OpenAIGenerator, TransformersGenerator
from factory.synth.rephrase import Config, GeneratorSettings, make_generator, rephrase, tiny
from factory.synth.stage import KIND, run

# The generator interface lives in `factory.generate`; its names stay importable from here for callers of synth.
__all__ = ["Config", "KIND", "run", "GenerationParams", "Generator", "GeneratorSettings", "OpenAIGenerator",
           "TransformersGenerator", "make_generator", "rephrase", "tiny"]
