import random

import numpy as np
import torch

from factory.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def fake_state(step):
    np_state = np.random.get_state()
    return {
        "model": {"w": torch.full((2,), float(step))},
        "optimizer": {"state": {}, "param_groups": []},
        "trainer": {"step": step, "position": 4 * step},
        "rng": {"torch": torch.get_rng_state(), "cuda": [],
                "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
                "python": random.getstate()},
    }


def test_only_complete_checkpoints_count_and_the_last_k_are_kept(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, fake_state(step), step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002", "step-000003"]
    # a write killed before its rename, and a folder missing files, are never resumed from
    (tmp_path / ".tmp-step-000009-123").mkdir()
    (tmp_path / "step-000010").mkdir()
    (tmp_path / "step-000010" / "model.pt").write_bytes(b"partial")
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-000003"
    state = load_checkpoint(latest)
    assert state["trainer"] == {"step": 3, "position": 12} and torch.equal(state["model"]["w"], torch.full((2,), 3.0))
    assert state["rng"]["python"] == random.getstate()
