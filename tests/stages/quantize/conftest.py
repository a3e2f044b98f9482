"""Session fixtures: the tiny tokens artifact and trained teacher of tests/stages/compress/tiny_models.py."""

import pytest

from tests.stages.compress.tiny_models import teacher_artifact, tokens_artifact


@pytest.fixture(scope="session")
def q_tokens(tmp_path_factory):
    return tokens_artifact(tmp_path_factory.mktemp("quantize-data"))


@pytest.fixture(scope="session")
def q_model(tmp_path_factory, q_tokens):
    return teacher_artifact(tmp_path_factory.mktemp("quantize-model"), q_tokens, steps=30)
