"""Session fixtures: tiny corpus -> tokens -> checkpoint -> evaluation artifacts, and one release of them."""

import pytest

from factory.stages import evaluate
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.generate import GenerationParams
from tests.spine import tiny_artifacts as load_tiny_artifacts

tiny_artifacts = load_tiny_artifacts()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("release_upstream")
    corpus = tiny_artifacts.corpus_artifact(root)
    tokens = tiny_artifacts.tokens_artifact(root, corpus)
    model = tiny_artifacts.model_artifact(root, tokens)
    config = evaluate.Config(seq_len=32, max_batches=2, max_new_tokens=4,
                             benchmarks=[BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic",
                                                                  size=4, samples=2)],
                             generation=GenerationParams(max_new_tokens=8, temperature=0.7))
    evaluation = tiny_artifacts.evaluation_artifact(root, model, tokens, config)
    return {"root": root, "corpus": corpus, "tokens": tokens, "model": model, "evaluation": evaluation}
