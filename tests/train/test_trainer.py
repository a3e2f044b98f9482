"""The trainer on the tiny model, for real on CPU: exact resume, non-finite handling, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from factory.model import PRESETS, build_model
from factory.stage import StepContext
from factory.tokens import PackedSequences
from factory.train import (
    Callback,
    CheckpointCallback,
    MetricsCallback,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    read_metrics,
)
from factory.train.objectives.causal_lm import CausalLMObjective, LossOutput
from factory.train.optim import param_groups

from tests.builders import WORD_VOCAB

CONFIG = TrainConfig(seq_len=32, micro_batch_size=4, grad_accum=2, steps=8, lr=3e-3, warmup_steps=2,
                     decay_fraction=0.25, checkpoint_interval=3, keep_checkpoints=2, seed=7)


class Kill(Exception):
    pass


class KillAt(Callback):
    """Simulates the pod dying right after step `step` finished (and was checkpointed)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, metrics):
        if metrics.step == self.step:
            raise Kill


def make_trainer(data, root, config=CONFIG, init_seed=0, extra=()):
    torch.manual_seed(init_seed)
    model = build_model(PRESETS["tiny"](), WORD_VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    ctx = StepContext("test")
    callbacks = [CheckpointCallback(root / "checkpoints", config.checkpoint_interval, config.keep_checkpoints),
                 MetricsCallback(root / "metrics.jsonl", ctx, config.log_interval), *extra]
    return Trainer(CausalLMObjective(model), data, config, callbacks=callbacks), ctx


@pytest.fixture(scope="module")
def data(word_tokens):
    return PackedSequences(word_tokens.path / "train", CONFIG.seq_len)


def test_killed_and_resumed_run_matches_straight_run(data, tmp_path):
    straight, _ = make_trainer(data, tmp_path / "a")
    straight.fit()
    want = [r["loss"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl")]

    killed, _ = make_trainer(data, tmp_path / "b", extra=[KillAt(5)])
    with pytest.raises(Kill):
        killed.fit()
    # steps 4 and 5 ran after the step-3 checkpoint and are lost with the process
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-000003"

    # a fresh process: different init (overwritten by the checkpoint), same config
    resumed, _ = make_trainer(data, tmp_path / "b", init_seed=123)
    state = resumed.fit()
    got = [r["loss"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")] == list(range(1, 9))
    assert got == want  # bitwise: same data order, optimizer state, schedule and RNG
    assert state.step == 8 and state.position == 8 * 4 * 2
    assert state.tokens_seen == 8 * 4 * 2 * 32
    for p, q in zip(straight.objective.parameters(), resumed.objective.parameters()):
        assert torch.equal(p, q)
    # keep_checkpoints=2: steps 6 and 8 (the final step is always saved)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-000006", "step-000008"]


def test_loss_drops_and_grad_accum_matches_a_bigger_batch(data, tmp_path):
    accum, _ = make_trainer(data, tmp_path / "accum", CONFIG.model_copy(update={"checkpoint_interval": 0}))
    accum.fit()
    big = CONFIG.model_copy(update={"micro_batch_size": 8, "grad_accum": 1, "checkpoint_interval": 0})
    one, _ = make_trainer(data, tmp_path / "one", big)
    one.fit()
    a = [r["loss"] for r in read_metrics(tmp_path / "accum" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    assert a == pytest.approx(b, rel=1e-4)  # same samples, same normalisation; only summation order differs
    assert a[-1] < a[0] - 0.5


class NaNAt(torch.nn.Module):
    """Wraps an objective; returns a NaN loss at the given 1-based steps."""

    def __init__(self, inner, bad_steps, grad_accum):
        super().__init__()
        self.inner, self.bad, self.grad_accum, self.calls = inner, set(bad_steps), grad_accum, 0

    def label_tokens(self, batch):
        return self.inner.label_tokens(batch)

    def forward(self, batch):
        out = self.inner(batch)
        step = self.calls // self.grad_accum + 1
        self.calls += 1
        return LossOutput(out.loss_sum * math.nan, out.tokens) if step in self.bad else out


def test_nonfinite_steps_are_skipped_and_counted(data, tmp_path):
    trainer, ctx = make_trainer(data, tmp_path, CONFIG.model_copy(update={"log_interval": 4}))
    trainer.objective = NaNAt(trainer.objective, {2, 3}, CONFIG.grad_accum)
    before = [p.detach().clone() for p in trainer.params]
    state = trainer.fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["skipped"] for r in records] == [False, True, True, False, False, False, False, False]
    assert records[1]["loss"] is None and records[-1]["skipped_steps"] == 2
    assert state.skipped_steps == 2 and state.consecutive_nonfinite == 0
    assert all(torch.isfinite(p).all() for p in trainer.params)
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.params))
    logged = [(m, s) for m, s in ctx.tracker.metrics]
    assert [s for _, s in logged] == [4, 8]
    assert logged[-1][0]["skipped_steps"] == 2 and set(logged[-1][0]) == {"loss", "lr", "grad_norm", "tokens_per_s", "skipped_steps"}


def test_too_many_nonfinite_steps_stop_with_the_last_good_checkpoint(data, tmp_path):
    config = CONFIG.model_copy(update={"max_consecutive_nonfinite": 3})
    trainer, _ = make_trainer(data, tmp_path, config)
    trainer.objective = NaNAt(trainer.objective, {4, 5, 6, 7}, CONFIG.grad_accum)
    with pytest.raises(NonFiniteLossError, match=r"step 6: .*3 consecutive.*step-000003"):
        trainer.fit()


def test_weight_decay_skips_norms_biases_and_embeddings():
    model = build_model(PRESETS["tiny"](), WORD_VOCAB)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "model.embeddings.weight" not in decayed and "lm_head.weight" in decayed
    assert "model.layers.0.mixer.in_proj.weight" in decayed and "model.layers.3.mixer.q_proj.weight" in decayed
    assert not any("norm" in n or n.endswith(("A_log", "D", "dt_bias", "bias")) for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_bfloat16_autocast_trains(data, tmp_path):
    config = CONFIG.model_copy(update={"precision": "bf16", "steps": 4, "checkpoint_interval": 0})
    trainer, _ = make_trainer(data, tmp_path, config)
    trainer.fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in trainer.params)  # master weights stay float32


def test_fused_adamw_follows_the_multi_tensor_one(data, tmp_path):
    # the CPU default stays multi-tensor (the runs' pinned results); the fused kernel is the GPU default
    plain, _ = make_trainer(data, tmp_path / "plain", CONFIG.model_copy(update={"checkpoint_interval": 0}))
    assert not plain.optimizer.defaults["fused"]
    fused, _ = make_trainer(data, tmp_path / "fused", CONFIG.model_copy(update={"checkpoint_interval": 0, "fused_optimizer": True}))
    assert fused.optimizer.defaults["fused"]
    plain.fit()
    fused.fit()
    a = [r["loss"] for r in read_metrics(tmp_path / "plain" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(tmp_path / "fused" / "metrics.jsonl")]
    assert len(a) == CONFIG.steps and b == pytest.approx(a, rel=1e-4)
    for p, q in zip(plain.params, fused.params):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
