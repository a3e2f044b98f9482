"""Session fixture: the quantize tests' model, the teacher of tests/stages/conftest.py trained for 30 steps."""

import pytest

from tests.builders import teacher


@pytest.fixture(scope="session")
def q_model(tmp_path_factory, tokens):
    return teacher(tmp_path_factory.mktemp("quantize-model"), tokens, steps=30)
