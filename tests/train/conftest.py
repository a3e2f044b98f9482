"""Every trainer kind's tiny inputs (tests/train/trainer_kinds.py), built once for the session."""

from __future__ import annotations

import pytest

from tests.train.trainer_kinds import kind_inputs


@pytest.fixture(scope="session")
def trainer_inputs(tmp_path_factory, chat_checkpoint, letter_policy):
    return kind_inputs(tmp_path_factory.mktemp("trainer_inputs"), chat_checkpoint, letter_policy)
