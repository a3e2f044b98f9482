"""The distill stage run for real: the compress stage's student distilled from its trained tiny teacher
(tests/stages/conftest.py) beats the same architecture trained from scratch, and an interrupted run resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from factory.stage import StepContext


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
