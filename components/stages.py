"""Component bodies, one per stage kind. KFP serialises each function's source into the pipeline, so
imports go inside.

Every body takes the spec, the name of the step it runs (several steps may share a kind), the pipeline's
plan (every step's fingerprint, computed once when the run started), the KFP job id, its output artifact,
and one input per input of its kind in `factory.kinds.KINDS`, optional ones defaulting to None.
`tests/test_components.py` checks these signatures against the registry.
"""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Output


def quality(spec: str, step: str, plan: str, job_id: str, artifact: Output[Artifact]):
    """Train the quality-classifier ensemble (reference text against junk)."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {}, artifact, plan)


def curate(spec: str, step: str, plan: str, job_id: str, artifact: Output[Artifact], quality: Optional[Input[Artifact]] = None):
    """Extract, filter and deduplicate raw web pages into a corpus, scored by the quality ensemble if given."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {"quality": quality}, artifact, plan)


def synth(spec: str, step: str, plan: str, job_id: str, corpus: Input[Artifact], artifact: Output[Artifact]):
    """Rewrite the corpus with an LLM by quality tier (Wikipedia-style rephrasing, QA pairs, ...)."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {"corpus": corpus}, artifact, plan)


def tokenize(spec: str, step: str, plan: str, job_id: str, corpus: Input[Artifact], artifact: Output[Artifact],
             synthetic: Optional[Input[Artifact]] = None):
    """Train the tokenizer and write the Megatron indexed datasets (real, and synthetic if given)."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {"corpus": corpus, "synthetic": synthetic}, artifact, plan)


def pretrain(spec: str, step: str, plan: str, job_id: str, tokens: Input[Artifact], artifact: Output[Artifact]):
    """Pretrain the hybrid Mamba-Transformer model."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {"tokens": tokens}, artifact, plan)


def evaluate(spec: str, step: str, plan: str, job_id: str, model: Input[Artifact], tokens: Input[Artifact], artifact: Output[Artifact]):
    """Held-out perplexity and generation samples."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {"model": model, "tokens": tokens}, artifact, plan)


def release(spec: str, step: str, plan: str, job_id: str, model: Input[Artifact], tokens: Input[Artifact], evaluation: Input[Artifact],
            artifact: Output[Artifact]):
    """Write the Hugging Face release folder with its model card."""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {"model": model, "tokens": tokens, "evaluation": evaluation}, artifact, plan)


def finish(spec: str, job_id: str, status: dsl.PipelineTaskFinalStatus):
    """Exit handler: close the pipeline's MLflow parent run with the pipeline's final state."""
    from factory.orchestrate import finish_pipeline

    finish_pipeline(spec, job_id, status.state)
