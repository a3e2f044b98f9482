"""Training precision in the trainer: converters before training, plain transformers model out, exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from factory.errors import SpecError
from factory.model import PRESETS, build_model
from factory.train.converters import apply_converters, training_converters
from factory.precision import Float8Linear, NVFP4Linear
from factory.stage import StepContext
from factory.tokens import PackedSequences
from factory.stages import pretrain
from factory.train import CheckpointCallback, MetricsCallback, TrainConfig, Trainer, read_metrics
from factory.train.objectives.causal_lm import CausalLMObjective

from tests.builders import WORD_VOCAB
from .test_trainer import Kill, KillAt

FAST = dict(seq_len=32, micro_batch_size=4, steps=6, lr=3e-3, warmup_steps=1, decay_fraction=0.2, checkpoint_interval=0)


def test_fp8_run_saves_a_plain_transformers_model(word_tokens, tmp_path):
    from transformers import AutoModelForCausalLM

    runs = {p: pretrain.run(pretrain.Config(precision=p, **FAST), {"tokens": word_tokens}, tmp_path / p, StepContext(p))
            for p in ("bf16", "fp8")}
    bf16, fp8 = (read_metrics(tmp_path / p / "metrics.jsonl") for p in ("bf16", "fp8"))
    assert all(math.isfinite(r["loss"]) for r in fp8) and fp8[-1]["loss"] < fp8[0]["loss"]
    assert [r["loss"] for r in fp8] != [r["loss"] for r in bf16]  # the FP8 linears were in use
    assert runs["fp8"]["final_loss"] == pytest.approx(runs["bf16"]["final_loss"], rel=0.03)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fp8" / "model")
    assert not any(isinstance(m, (Float8Linear, NVFP4Linear)) for m in model.modules())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights were saved


def test_converters_follow_the_checked_order():
    model = build_model(PRESETS["tiny"](), WORD_VOCAB)
    apply_converters(model, training_converters("nvfp4"))
    kinds = [type(m).__name__ for m in model.model.layers[2].modules()]  # the middle block of "M-M*-"
    assert "NVFP4Linear" in kinds and type(model.lm_head) is torch.nn.Linear
    assert not any(isinstance(m, NVFP4Linear) for m in model.model.layers[0].modules())  # model.layers.0.* kept
    assert training_converters("bf16") == [] and training_converters("fp32") == []
    with pytest.raises(SpecError, match="order"):
        apply_converters(build_model(PRESETS["tiny"](), WORD_VOCAB), [*training_converters("nvfp4"), *training_converters("fp8")])


def test_nvfp4_resume_is_exact_with_stochastic_rounding(word_tokens, tmp_path):
    """NVFP4 rounds gradients stochastically from per-module generators; their states are checkpointed."""
    config = TrainConfig(precision="nvfp4", **{**FAST, "checkpoint_interval": 2})
    data = PackedSequences(word_tokens.path / "train", config.seq_len)

    def trainer(root, extra=()):
        torch.manual_seed(0)
        model = apply_converters(build_model(PRESETS["tiny"](), WORD_VOCAB), training_converters("nvfp4"))
        callbacks = [CheckpointCallback(root / "ckpt", 2, 2), MetricsCallback(root / "m.jsonl", StepContext("t"), 10), *extra]
        return Trainer(CausalLMObjective(model), data, config, callbacks=callbacks)

    trainer(tmp_path / "a").fit()
    with pytest.raises(Kill):
        trainer(tmp_path / "b", [KillAt(3)]).fit()
    trainer(tmp_path / "b").fit()
    a, b = (read_metrics(tmp_path / x / "m.jsonl") for x in "ab")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
