"""Session fixtures: a tiny tokens artifact and a trained tiny teacher, built once (see tiny_models.py)."""

import pytest

from tests.stages.compress.tiny_models import teacher_artifact, tokens_artifact


@pytest.fixture(scope="session")
def tokens(tmp_path_factory):
    return tokens_artifact(tmp_path_factory.mktemp("compress-data"))


@pytest.fixture(scope="session")
def teacher(tmp_path_factory, tokens):
    return teacher_artifact(tmp_path_factory.mktemp("compress-teacher"), tokens)
