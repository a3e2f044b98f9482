"""The compress and distill stages run for real on a trained tiny teacher (tests/stages/compress/tiny_models.py)."""

from __future__ import annotations

import json

import pytest
import torch

from factory.stages.compress.config import PruneTarget
from factory.stages.compress.search import Budget, SearchSpace
from factory.errors import InputError, SpecError
from factory.stage import Artifact, StepContext

TARGET = PruneTarget(hidden_size=48, intermediate_size=64, mamba_num_heads=4, drop_layers=1)


def _compress(config, teacher, tokens, out):
    from factory.stages.compress import stage

    return stage.run(config, {"model": teacher, "tokens": tokens}, out, StepContext("compress"))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, teacher, tokens):
    from factory.stages.compress import stage

    out = tmp_path_factory.mktemp("pruned")
    metrics = _compress(stage.Config(target=TARGET, calibration_samples=16), teacher, tokens, out)
    return Artifact(out, {"fingerprint": "pruned"}), metrics


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
        _compress(stage.Config(target=TARGET, calibration_samples=100_000), teacher, tokens, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_prune_and_distil_beats_scratch_and_prune_only(tmp_path, pruned, teacher, tokens):
    """Minitron's claim in miniature: at the same token budget, the pruned student distilled from the
    teacher reaches a lower validation loss than the same architecture trained from scratch, and than
    the pruned model without distillation."""
    from transformers import AutoModelForCausalLM

    from factory.artifacts import Tokens
    from factory.model.checkpoints import lm_loss
    from factory.stages.distill import stage as distill
    from factory.train.config import TrainConfig
    from factory.train.objectives.causal_lm import CausalLMObjective
    from factory.train.trainer import Trainer

    art, _ = pruned
    steps = 30
    cfg = distill.Config(steps=steps, seq_len=32, micro_batch_size=8, lr=3e-3, warmup_steps=3, checkpoint_interval=10, valid_samples=16)
    result = distill.run(cfg, {"student": art, "teacher": teacher, "tokens": tokens}, tmp_path / "distilled", StepContext("distill"))
    assert (tmp_path / "distilled" / "model" / "config.json").exists()
    assert not (tmp_path / "distilled" / "checkpoints").exists()
    assert result["steps"] == steps

    scratch_cfg = AutoModelForCausalLM.from_pretrained(art.path / "model").config
    torch.manual_seed(0)
    scratch = AutoModelForCausalLM.from_config(scratch_cfg)
    windows = list(Tokens.of({"tokens": tokens}, "tokens").windows("train", 32))
    Trainer(CausalLMObjective(scratch), windows, TrainConfig(steps=steps, seq_len=32, micro_batch_size=8, lr=3e-3,
                                                             warmup_steps=3, checkpoint_interval=0)).fit()
    valid = Tokens.of({"tokens": tokens}, "tokens").windows("valid", 32, 16)
    scratch_loss = lm_loss(scratch.eval(), valid)
    assert result["valid_loss_after"] < scratch_loss
    assert result["valid_loss_after"] < result["valid_loss_before"]  # prune only
    assert result["teacher_valid_loss"] < result["valid_loss_before"]


def test_distill_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path, pruned, teacher, tokens, monkeypatch):
    from safetensors.torch import load_file

    from factory.stages.distill import stage as distill
    from factory.train.trainer import Trainer

    art, _ = pruned
    inputs = {"student": art, "teacher": teacher, "tokens": tokens}
    cfg = distill.Config(steps=4, seq_len=32, micro_batch_size=4, lr=1e-3, warmup_steps=0, decay_fraction=0.0,
                         checkpoint_interval=2, valid_samples=4, temperature=2.0, lm_weight=0.5)
    distill.run(cfg, inputs, tmp_path / "straight", StepContext("distill"))

    original = Trainer.train_step

    def killed_after_two(self):
        if self.state.step == 2:
            raise KeyboardInterrupt("killed")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        distill.run(cfg, inputs, tmp_path / "resumed", StepContext("distill"))
    assert (tmp_path / "resumed" / "checkpoints" / "step-000002").is_dir() and not (tmp_path / "resumed" / "model").exists()
    monkeypatch.setattr(Trainer, "train_step", original)
    result = distill.run(cfg, inputs, tmp_path / "resumed", StepContext("distill"))
    assert result["steps"] == 4
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
