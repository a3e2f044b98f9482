"""The compress stage run for real on a trained tiny teacher (tests/stages/conftest.py)."""

from __future__ import annotations

import json

import pytest

from factory.errors import InputError, SpecError
from factory.stage import StepContext
from factory.stages.compress.config import PruneTarget
from factory.stages.compress.search import Budget, SearchSpace


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


def _spec(compress: dict, quantize: dict | None = None) -> dict:
    stages = {"curate": {"sources": ["x"]}, "tokenize": {}, "pretrain": {}, "compress": compress, "distill": {}}
    if quantize is not None:
        stages["quantize"] = quantize
    return {"name": "widths", "model": {"preset": "tiny"}, "stages": stages}


def test_widths_a_later_quantize_step_cannot_export_are_refused_when_the_spec_loads():
    from factory.spec import parse_spec

    with pytest.raises(SpecError, match=r"^stages\.compress: target\.hidden_size: 56 is not a multiple of width_multiple_of = 16 "
                                        r"\(the block size of the formats a quantize step exports\); use 48 or 64$"):
        parse_spec(_spec({"target": {"hidden_size": 56}}, quantize={}))
    with pytest.raises(SpecError, match=r"search\.multiple_of: 8 would choose widths not a multiple of width_multiple_of = 16"):
        parse_spec(_spec({"budget": {"max_params": 10**6}, "search": {"multiple_of": 8}}, quantize={"variants": ["fp8"]}))
    # without a quantize step any width goes; with one the search rounds to 16 unless told otherwise
    assert parse_spec(_spec({"target": {"hidden_size": 56}})).stage_config("compress").width_multiple_of is None
    searched = parse_spec(_spec({"budget": {"max_params": 10**6}}, quantize={})).stage_config("compress")
    assert (searched.width_multiple_of, searched.search.multiple_of) == (16, 16)
    assert parse_spec(_spec({"target": {"hidden_size": 48}}, quantize={})).stage_config("compress").target.hidden_size == 48


def test_head_widths_are_checked_against_the_model_before_any_work():
    from factory.model import build_model
    from factory.stages.compress.search import mamba_head_step
    from factory.stages.compress.surgery import check_target
    from tests.builders import TEACHER

    config = build_model(TEACHER.model_copy(update={"mamba_head_dim": 12, "mamba_num_heads": 8}), 64).config
    with pytest.raises(SpecError, match=r"target\.mamba_num_heads: the Mamba inner width \(heads x head width\) would be 72, "
                                        r"not a multiple of width_multiple_of = 16"):
        check_target(config, PruneTarget(mamba_num_heads=6), "target", 16)
    check_target(config, PruneTarget(mamba_num_heads=4), "target", 16)  # 48
    check_target(config, PruneTarget(mamba_num_heads=6), "target", None)
    assert mamba_head_step(2, 12, 16) == 4 and mamba_head_step(2, 16, 16) == 2 and mamba_head_step(3, 64, None) == 3
