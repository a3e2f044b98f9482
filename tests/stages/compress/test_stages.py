"""The compress stage run for real on a trained tiny teacher (tests/stages/conftest.py)."""

from __future__ import annotations

import json

import pytest

from factory.stages.compress.config import PruneTarget
from factory.stages.compress.search import Budget, SearchSpace
from factory.errors import InputError, SpecError
from factory.stage import StepContext

def _compress(config, teacher, tokens, out):
    from factory.stages.compress import stage

    return stage.run(config, {"model": teacher, "tokens": tokens}, out, StepContext("compress"))


def test_compress_to_target_writes_a_stock_transformers_model(pruned):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    art, metrics = pruned
    report = json.loads((art.path / "compress.json").read_text())
    assert report["teacher"]["pattern"] == "M*-M*-" and len(report["student"]["pattern"]) == 5
    assert metrics["params_after"] == report["student"]["params"] < metrics["params_before"]
    model = AutoModelForCausalLM.from_pretrained(art.path / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics["params_after"]
    assert (model.config.hidden_size, model.config.mamba_num_heads, model.config.n_groups) == (48, 4, 2)
    tok = AutoTokenizer.from_pretrained(art.path / "model")
    ids = tok("The old river", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4
    # pruning without distillation costs loss on the calibration windows
    assert metrics["calibration_loss_after"] > metrics["calibration_loss_before"]


def test_budget_search_reports_candidates_and_keeps_one_within_budget(tmp_path, teacher, tokens):
    from factory.stages.compress import stage

    space = SearchSpace(hidden_fractions=[1.0, 0.75], mlp_fractions=[0.5], mamba_head_fractions=[0.5], drop_layers=[0, 1], max_candidates=2)
    budget = Budget(max_params=100_000, context_len=4096)
    metrics = _compress(stage.Config(budget=budget, search=space, calibration_samples=16, candidate_steps=3), teacher, tokens, tmp_path)
    report = json.loads((tmp_path / "compress.json").read_text())
    cands = report["candidates"]
    assert len(cands) == 2 and all(c["params"] <= 100_000 for c in cands)
    assert cands[0]["params"] >= cands[1]["params"]
    for c in cands:
        assert set(c["memory_bytes"]) == {"weights", "kv_cache", "mamba_conv", "mamba_ssm"}
        assert c["memory_bytes"]["weights"] == 2 * c["params"]  # bf16
        assert c["valid_loss_distilled"] < c["valid_loss_pruned"]
    best = min(cands, key=lambda c: c["valid_loss_distilled"])
    assert metrics["params_after"] == best["params"] <= 100_000


def test_unmeetable_budget_fails_cleanly(tmp_path, teacher, tokens):
    from factory.stages.compress import stage

    with pytest.raises(SpecError, match="budget.max_params: no candidate meets max_params=1000"):
        _compress(stage.Config(budget=Budget(max_params=1000), calibration_samples=16), teacher, tokens, tmp_path)
    assert not (tmp_path / "model").exists() and not (tmp_path / "compress.json").exists()


def test_short_calibration_set_fails_cleanly(tmp_path, teacher, tokens):
    from factory.stages.compress import stage

    with pytest.raises(InputError, match="fewer than calibration_samples = 100000"):
        _compress(stage.Config(target=PruneTarget(drop_layers=1), calibration_samples=100_000), teacher, tokens, tmp_path)
    assert list(tmp_path.iterdir()) == []
