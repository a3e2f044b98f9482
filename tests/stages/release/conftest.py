"""Session fixtures: the session's pretraining lineage (tests/conftest.py) with an evaluation of its model."""

import pytest

from factory.generate import GenerationParams
from factory.stages import evaluate
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from tests.builders import stage_output


@pytest.fixture(scope="session")
def upstream(upstream, tmp_path_factory):
    config = evaluate.Config(seq_len=32, max_batches=2, max_new_tokens=4,
                             benchmarks=[BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic",
                                                         size=4, samples=2)],
                             generation=GenerationParams(max_new_tokens=8, temperature=0.7))
    inputs = {"model": upstream["model"], "tokens": upstream["tokens"]}
    return {**upstream, "evaluation": stage_output("evaluate", config, inputs, tmp_path_factory.mktemp("release_upstream"))}
