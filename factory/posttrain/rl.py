"""The rl stage: GRPO with verifiable rewards (AceReason 1.0/1.1, DAPO, NeMo-RL), on the factory's trainer.

Inputs: "model" (a checkpoint whose tokenizer carries the chat template, e.g. the sft step's output) and
"data" (a conversations artifact: `prompts.jsonl` holds every prompt with its reference and its `verifier`).
Output:

    model/          the trained policy (a plain transformers folder, tokenizer and chat template copied)
    metrics.jsonl   one record per optimizer step: loss, lr, grad_norm, tokens, ...
    rollouts.jsonl  one record per step: reward, accuracy, zero-variance fraction, truncation rate, entropy,
                    temperature, response length, KL, grad norm, clip fraction, the rollout's digest
    rl.png          reward and accuracy against step
    rl.json         summary: reward and accuracy of the first and last rollouts, steps

Every step: a rollout batch (`factory.posttrain.rollout.RolloutBatches`: G samples per prompt from the local
policy or an OpenAI-compatible server, verifier rewards, dynamic sampling, overlong filtering, temperature
control), then `steps_per_rollout` optimizer steps of `factory.train.grpo.GRPOObjective` on it. With
`steps_per_rollout: 1` (the default) training is strictly on-policy: the ratio is exactly 1.

AceReason's curriculum is configuration, two steps of this kind in one spec:

    steps:
      rl_math: {kind: rl, config: {verifiers: [math], rollout: {length_schedule: [{until_fraction: 0.5, max_new_tokens: 64},
                                                                                  {until_fraction: 1.0, max_new_tokens: 96}]}},
                inputs: {model: sft, data: posttrain_data}}
      rl_code: {kind: rl, config: {verifiers: [code], ...}, inputs: {model: rl_math, data: posttrain_data}}

Resumable: `checkpoints/step-NNNNNN/` hold model, optimizer, RNG states and the rollout source's state
(its generator, prompt cursor, temperature and current rollout batch), so a run killed at any step resumes
with the same rollouts and bit-identical losses. They are removed once `model/` is written.

    from factory.posttrain import rl
    rl.run(rl.Config(steps=20), {"model": sft_checkpoint, "data": conversations}, out, StepContext("rl"))
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from factory.errors import InputError
from factory.posttrain.records import VerifierName
from factory.posttrain.rewards import RewardConfig
from factory.posttrain.rollout import RolloutConfig
from factory.stage import Artifact, StepContext
from factory.train.config import TrainConfig

if TYPE_CHECKING:
    from factory.train.trainer import StepMetrics, Trainer

__all__ = ["Config", "run"]


class Config(TrainConfig):
    """GRPO: the training-loop fields of `TrainConfig` (`seq_len` unused: rollouts set their own lengths;
    `micro_batch_size` x `grad_accum` samples per optimizer step) plus the loss, rollout and reward knobs.
    Defaults: a constant learning rate, as RL runs use."""

    micro_batch_size: int = Field(8, gt=0, description="Samples (completions) per forward/backward pass.")
    steps: int = Field(20, gt=0, description="Optimizer steps to train.")
    lr: float = Field(1e-4, gt=0, description="Learning rate (constant after warmup unless decay_fraction > 0).")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warmup.")
    decay_fraction: float = Field(0.0, ge=0, le=1, description="Fraction of the steps spent in the final linear decay.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled AdamW weight decay.")
    checkpoint_interval: int = Field(5, ge=0, description="Steps between resumable checkpoints (0 = none).")
    steps_per_rollout: int = Field(1, ge=1, description="Optimizer steps per rollout batch; 1 is strictly on-policy "
                                                        "(ratio exactly 1), more reuse the batch as PPO minibatches.")
    eps_low: float = Field(0.2, ge=0, description="Lower clip bound of the ratio: 1 - eps_low.")
    eps_high: float = Field(0.28, ge=0, description="Upper clip bound of the ratio: 1 + eps_high (clip-higher, DAPO).")
    kl_coef: float = Field(0.0, ge=0, description="Weight of the k3 KL to the input model (0: no KL term, AceReason/DAPO).")
    log_reference_kl: bool = Field(True, description="Keep the input model as a reference to log the KL even when "
                                                     "kl_coef is 0 (one more no-grad forward per rollout).")
    verifiers: list[VerifierName] | None = Field(None, description="Train on prompts of these verifiers only (AceReason: "
                                                                   "[math], then [code]); None: every prompt.")
    max_prompts: int | None = Field(None, gt=0, description="Use at most this many prompts (the first of prompts.jsonl).")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Sampling, filtering, length schedule, temperature control.")
    rewards: RewardConfig = Field(default_factory=RewardConfig, description="How the verifiers run.")

    @model_validator(mode="after")
    def _rollout_fits(self) -> Config:
        per_rollout = self.samples_per_rollout
        if per_rollout % self.rollout.group_size:
            raise ValueError(f"steps_per_rollout x micro_batch_size x grad_accum = {per_rollout} samples per rollout "
                             f"must be a multiple of rollout.group_size {self.rollout.group_size}")
        return self

    @property
    def samples_per_rollout(self) -> int:
        return self.steps_per_rollout * self.micro_batch_size * self.grad_accum


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train the "model" input with GRPO on the "data" input's prompts; write `model/` and the logs above."""
    import torch
    from transformers import AutoTokenizer

    from factory.artifacts import Checkpoint, Conversations
    from factory.model.checkpoints import load_model, save_model
    from factory.posttrain.chat import with_chat_template
    from factory.posttrain.rewards import VerifierRewards
    from factory.posttrain.rollout import EndpointSampler, LocalSampler, PolicyPublisher, RolloutBatches
    from factory.train.callbacks import MetricsCallback, read_metrics
    from factory.train.checkpoint import CheckpointCallback
    from factory.train.grpo import GRPOObjective
    from factory.train.trainer import Trainer

    output = Path(output)
    model_dir = Checkpoint.of(inputs, "model").model_dir
    data = Conversations.of(inputs, "data")
    prompts = _training_prompts(data, config)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not tokenizer.chat_template:
        try:
            with_chat_template(tokenizer)
        except ValueError as e:
            raise InputError(f"{model_dir}: {e}") from None
    ctx.log_dataset(name="prompts", uri=inputs["data"].uri,
                    digest=inputs["data"].manifest.get("fingerprint", ""), context="training",
                    profile={"prompts": len(prompts), "verifiers": sorted({p.verifier for p in prompts})})

    torch.manual_seed(config.seed)
    policy = load_model(model_dir).train()
    reference = load_model(model_dir) if (config.kl_coef > 0 or config.log_reference_kl) else None
    if reference is not None:
        reference.requires_grad_(False)
    objective = GRPOObjective(policy, config.eps_low, config.eps_high, config.kl_coef)
    publisher = None
    if config.rollout.endpoint is not None:
        endpoint = config.rollout.endpoint
        sampler: Any = EndpointSampler(endpoint, tokenizer)
        publisher = PolicyPublisher(Path(endpoint.publish_dir) if endpoint.publish_dir else output / "policy",
                                    model_dir, endpoint.reload_url, endpoint.timeout_s)
    else:
        sampler = LocalSampler(policy, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    metrics_path, rollouts_path = output / "metrics.jsonl", output / "rollouts.jsonl"
    with VerifierRewards(config.rewards) as rewards:
        source = RolloutBatches(prompts, policy, sampler, rewards, config.rollout, config.samples_per_rollout,
                                config.steps_per_rollout, config.steps, config.seed, pad_id, reference=reference,
                                old_logprobs=config.steps_per_rollout > 1, publisher=publisher,
                                forward_batch=config.micro_batch_size)
        callbacks = [CheckpointCallback(output / "checkpoints", config.checkpoint_interval, config.keep_checkpoints),
                     MetricsCallback(metrics_path, ctx, config.log_interval),
                     RolloutMetricsCallback(rollouts_path, ctx, source, objective)]
        state = Trainer(objective, source, config, callbacks=callbacks).fit()

    save_model(policy, output / "model", tokenizer_from=model_dir)
    shutil.rmtree(output / "checkpoints", ignore_errors=True)
    if publisher is not None and config.rollout.endpoint.publish_dir is None:
        shutil.rmtree(output / "policy", ignore_errors=True)
    records = read_metrics(rollouts_path)
    plot_rewards(records, output / "rl.png")
    ctx.log_artifact(output / "rl.png")
    head, tail = records[: max(1, len(records) // 4)], records[-max(1, len(records) // 4):]
    result = {
        "steps": float(state.step), "prompts": float(len(prompts)),
        "reward_first": _mean(r["reward"] for r in head), "reward_last": _mean(r["reward"] for r in tail),
        "accuracy_first": _mean(r["accuracy"] for r in head), "accuracy_last": _mean(r["accuracy"] for r in tail),
        "final_loss": _mean(r["loss"] for r in read_metrics(metrics_path)[-1:] if r["loss"] is not None),
        "skipped_steps": float(state.skipped_steps),
    }
    (output / "rl.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _training_prompts(data: Any, config: Config) -> list:
    """The prompts RL trains on: prompts.jsonl, filtered by `verifiers`; one clear error when none are left.
    A record without its answer fails in the reader, which names file and line."""
    path = data.path / "prompts.jsonl"
    prompts = data.prompts()
    if not prompts:
        raise InputError(f"{path}: no prompts; RL needs prompts with references (run the posttrain_data step)")
    if config.verifiers is not None:
        prompts = [p for p in prompts if p.verifier in config.verifiers]
        if not prompts:
            raise InputError(f"{path}: no prompt has a verifier in verifiers={config.verifiers}; the set holds "
                             f"{sorted({p.verifier for p in data.prompts()})}")
    if config.max_prompts is not None:
        prompts = prompts[: config.max_prompts]
    if len(prompts) < config.samples_per_rollout // config.rollout.group_size:
        raise InputError(f"{path}: {len(prompts)} prompts, fewer than the {config.samples_per_rollout // config.rollout.group_size} "
                         "a rollout batch needs; add prompts or lower micro_batch_size")
    return prompts


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else math.nan


class RolloutMetricsCallback:
    """Per step: the rollout's statistics and the loss's (clip fraction, entropy) to `rollouts.jsonl` and
    the tracker. On resume, records past the restored step are dropped, so each step appears once.

    A trainer callback (`factory.train.trainer.Callback`'s three hooks) written without the base class, so
    that loading a spec, which imports this module for its Config, does not import torch."""

    marks_progress = False

    def __init__(self, path: Path, ctx: StepContext, source: Any, objective: Any) -> None:
        self.path, self.ctx, self.source, self.objective = Path(path), ctx, source, objective

    def on_train_start(self, trainer: Trainer) -> None:
        from factory.train.callbacks import read_metrics

        kept = [r for r in read_metrics(self.path) if r["step"] <= trainer.state.step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        loss_stats = self.objective.pop_stats()
        tokens = max(loss_stats.get("tokens", 0.0), 1.0)
        record: dict[str, Any] = {"step": metrics.step, **self.source.stats.metrics(), "loss": metrics.loss,
                                  "grad_norm": metrics.grad_norm,
                                  "clip_fraction": loss_stats.get("clipped", 0.0) / tokens,
                                  "train_entropy": loss_stats.get("entropy_sum", 0.0) / tokens,
                                  "rollout": self.source.stats.rollout, "digest": self.source.stats.digest}
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}  # JSON has no NaN
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        numeric = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("step", "rollout")}
        self.ctx.log_metrics({f"rl/{k}": v for k, v in numeric.items()}, step=metrics.step)

    def on_train_end(self, trainer: Trainer) -> None: ...


def plot_rewards(records: list[dict], path: Path) -> None:
    """Reward and accuracy against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key in ("reward", "accuracy"):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("rollout mean")
    ax.set_title("GRPO: verifiable reward")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
