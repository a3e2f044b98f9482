"""Session fixtures of the compress, distill and quantize tests: token data a tiny model learns, a teacher trained on
it, and the compress stage's student pruned from that teacher."""

import pytest

from factory.stage import StepContext
from factory.stages.compress import stage as compress
from factory.stages.compress.config import PruneTarget
from tests import builders

# hidden, MLP and Mamba widths pruned, and one layer dropped
TARGET = PruneTarget(hidden_size=48, intermediate_size=64, mamba_num_heads=4, drop_layers=1)


@pytest.fixture(scope="session")
def tokens(tmp_path_factory):
    return builders.grammar_tokens(tmp_path_factory.mktemp("grammar_tokens"))


@pytest.fixture(scope="session")
def teacher(tmp_path_factory, tokens):
    return builders.teacher(tmp_path_factory.mktemp("teacher"), tokens)


@pytest.fixture(scope="session")
def pruned(tmp_path_factory, teacher, tokens):
    """(the student, the compress stage's metrics): the teacher pruned to TARGET."""
    out = tmp_path_factory.mktemp("pruned")
    metrics = compress.run(compress.Config(target=TARGET, calibration_samples=16), {"model": teacher, "tokens": tokens}, out,
                           StepContext("compress"))
    return builders.publish(out, "compress", "checkpoint", inputs={"model": teacher, "tokens": tokens}), metrics
