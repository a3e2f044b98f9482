"""The rl stage: GRPO with verifiable rewards (AceReason 1.0/1.1, DAPO, NeMo-RL), on the training-stage shell.

Inputs: "model" (a checkpoint whose tokenizer carries the chat template, e.g. the sft step's output) and
"data" (a conversations artifact: `prompts.jsonl` holds every prompt with its reference and its `verifier`).
Output:

    model/          the trained policy (a plain transformers folder, its tokenizer with the chat template)
    metrics.jsonl   one record per optimizer step: loss, lr, grad_norm, tokens, ...
    loss.png        the GRPO loss against step
    rollouts.jsonl  one record per step: reward, accuracy, zero-variance fraction, truncation rate, entropy,
                    temperature, response length, KL, grad norm, clip fraction, the rollout's digest
    rl.png          reward and accuracy against step
    rl.json         summary: reward and accuracy of the first and last rollouts, steps (with `environments`: each
                    one's held-out accuracy and its standard error, `heldout/<name>/accuracy`)
    environments.json, environments.png   with `environments`: per environment its weight, whether and why it was
                    dropped, lost samples by reason, held-out accuracy, how its held-out pool was kept apart
                    from training (candidates removed as training prompts, counted); reward, pass rate, length, entropy and
                    weight against step (also MLflow metrics `rl/env/<name>/...`)

Every step: a rollout batch (`factory.stages.rl.rollout.RolloutBatches`: G samples per prompt from the local
policy or an OpenAI-compatible server, verifier rewards, dynamic sampling, overlong filtering, temperature
control), then `steps_per_rollout` optimizer steps of `factory.train.objectives.grpo.GRPOObjective` on it. With
`steps_per_rollout: 1` (the default) training is strictly on-policy: the ratio is exactly 1.

Many environments in one step (`factory.envs`: reasoning-gym generators, task files, user JSONL, the data input,
IFEval-style instructions, python tool turns, a user's module, an HTTP environment), with weights, a weight
schedule and a curriculum that drops environments without signal:

    rl: {kind: rl, config: {environments: [{name: arith, procedural: basic_arithmetic, weight: 2},
                                           {name: mcq, task_file: multiple_choice}, {name: ifeval, instructions: {}},
                                           {name: gym, url: "http://127.0.0.1:8765"}],
                            curriculum: {window: 16, threshold: 0.9}}, inputs: {model: sft, data: posttrain_data}}

AceReason's curriculum is configuration, two steps of this kind in one spec:

    steps:
      rl_math: {kind: rl, config: {verifiers: [math], rollout: {length_schedule: [{until_fraction: 0.5, max_new_tokens: 64},
                                                                                  {until_fraction: 1.0, max_new_tokens: 96}]}},
                inputs: {model: sft, data: posttrain_data}}
      rl_code: {kind: rl, config: {verifiers: [code], ...}, inputs: {model: rl_math, data: posttrain_data}}

The shell (`factory.train.shell`) applies the precision converters to the policy, which both samples the rollouts
and trains; the reference model stays in full precision. Resumable: `checkpoints/step-NNNNNN/` hold model, optimizer, RNG states and the rollout source's state
(its generator, prompt cursor, temperature and current rollout batch), so a run killed at any step resumes
with the same rollouts and bit-identical losses. They are removed once `model/` is written.

    from factory.stages import rl
    rl.run(rl.Config(steps=20), {"model": sft_checkpoint, "data": conversations}, out, StepContext("rl"))
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any


from factory.artifacts import Checkpoint, Conversations
from factory.chat.template import chat_tokenizer
from factory.envs import Environment, EnvironmentGone, Mixture, open_environment, prompts_environment
from factory.errors import InputError, ServiceError
from factory.generate.groups import EndpointSampler, LocalSampler
from factory.model.checkpoints import load_model
from factory.stage import Artifact, StepContext
from factory.stages.rl.config import Config
from factory.stages.rl.rewards import VerifierRewards
from factory.stages.rl.rollout import PolicyPublisher, RolloutBatches
from factory.train.callbacks import StepLog, plt, read_metrics
from factory.train.objectives.grpo import GRPOObjective
from factory.train.shell import TrainingShell, write_summary
from factory.train.trainer import StepMetrics, Trainer


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train the "model" input with GRPO on the "data" input's prompts; write `model/` and the logs above."""
    output = Path(output)
    # the environments' judges without a model folder read the `judge` input's model (checked before the policy loads)
    config = config.with_judge_model(Checkpoint.of(inputs, "judge").model_dir) if config.input_judges else config
    model_dir = Checkpoint.of(inputs, "model").model_dir
    data = Conversations.of(inputs, "data")
    prompts = _training_prompts(data, config) if config.environments is None else []
    tokenizer = chat_tokenizer(model_dir)
    if prompts:
        ctx.log_dataset(name="prompts", uri=inputs["data"].uri,
                        digest=inputs["data"].manifest.get("fingerprint", ""), context="training",
                        profile={"prompts": len(prompts), "verifiers": sorted({p.verifier for p in prompts})})

    with TrainingShell(config, output, ctx, plot_title="GRPO loss") as shell:
        policy = shell.prepare(load_model(model_dir).train())
        reference = load_model(model_dir) if (config.kl_coef > 0 or config.log_reference_kl) else None
        if reference is not None:
            reference.requires_grad_(False)
        objective = GRPOObjective(policy, config.eps_low, config.eps_high, config.kl_coef)
        publisher = None
        rollout = config.rollout
        if rollout.generator.kind == "openai":
            sampler: Any = EndpointSampler(rollout.generator, tokenizer)
            publisher = PolicyPublisher(Path(rollout.publish_dir) if rollout.publish_dir else output / "policy",
                                        model_dir, rollout.reload_url, rollout.generator.timeout_s)
        else:
            sampler = LocalSampler(policy, tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        rollouts_path = output / "rollouts.jsonl"
        with VerifierRewards(config.rewards) as rewards, _environments(config, data, prompts, rewards) as envs:
            _log_environments(ctx, envs)
            mixture = Mixture(envs, [e.config.weight for e in envs], config.weight_schedule, config.curriculum,
                              config.error_budget, config.seed)
            source = RolloutBatches(mixture, policy, sampler, config.rollout, config.samples_per_rollout,
                                    config.steps_per_rollout, config.steps, config.seed, pad_id, reference=reference,
                                    old_logprobs=config.steps_per_rollout > 1, publisher=publisher,
                                    forward_batch=config.micro_batch_size)
            result = shell.fit(shell.trainer(objective, source, tokenizer=tokenizer,
                                             callbacks=[RolloutMetricsCallback(rollouts_path, ctx, source, objective,
                                                                               config.heldout_interval)]))
            heldout = source.heldout(config.rollout.length_schedule[-1].max_new_tokens) if config.environments else {}
            table = _environment_table(mixture, heldout)
    if publisher is not None and config.rollout.publish_dir is None:
        shutil.rmtree(output / "policy", ignore_errors=True)
    records = read_metrics(rollouts_path)
    plot_rewards(records, output / "rl.png")
    ctx.log_artifact(output / "rl.png")
    head, tail = records[: max(1, len(records) // 4)], records[-max(1, len(records) // 4):]
    summary = {**result.summary, "prompts": float(len(prompts)),
               "reward_first": _mean(r["reward"] for r in head), "reward_last": _mean(r["reward"] for r in tail),
               "accuracy_first": _mean(r["accuracy"] for r in head), "accuracy_last": _mean(r["accuracy"] for r in tail)}
    if config.environments is not None:
        summary.update({f"heldout/{name}/{key}": row["heldout"][key] for name, row in table.items()
                        for key in ("accuracy", "stderr") if row.get("heldout")})
        ctx.log_metrics({k: v for k, v in summary.items() if k.startswith("heldout/") and math.isfinite(v)})
        write_summary(output / "environments.json", table)
        plot_environments(records, list(table), output / "environments.png")
        ctx.log_artifact(output / "environments.png")
    write_summary(output / "rl.json", summary)
    return summary


@contextmanager
def _environments(config: Config, data: Any, prompts: list, rewards: VerifierRewards) -> Iterator[list[Environment]]:
    """The step's environments, open until the run ends: `environments`, or the data input's prompts as one."""
    envs: list[Environment] = []
    try:
        if config.environments is None:
            envs.append(prompts_environment(prompts, verifiers=rewards))
        else:
            for env_config in config.environments:
                try:
                    envs.append(open_environment(env_config, rewards=config.rewards, data=data, verifiers=rewards))
                except EnvironmentGone as e:
                    raise ServiceError(f"environments.{env_config.name}: {e}; start the environment's server "
                                       f"(python -m factory.envs.serve) before the step") from None
                if envs[-1].size("train") == 0:
                    raise InputError(f"environments.{env_config.name}: it poses no training task")
        yield envs
    finally:
        for env in envs:
            env.close()


def _log_environments(ctx: StepContext, envs: list[Environment]) -> None:
    for env in envs:
        if env.name != "data":
            ctx.log_dataset(name=f"env/{env.name}", uri=env.config.url or env.config.module or env.config.source,
                            digest="", context="training",
                            profile={"train": env.size("train"), "heldout": env.size("heldout"),
                                     "weight": env.config.weight})


def _environment_table(mixture: Mixture, heldout: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per environment: its weight, whether and why the run dropped it, its lost samples by reason, its held-out
    accuracy, and how its held-out pool was kept apart from training (`heldout_split`: requested, posed, drawn, and
    the candidates removed as training prompts or repeats; None for a module or HTTP environment, whose splits are
    its own)."""
    return {name: {"weight": env.config.weight, "dropped": mixture.dropped.get(name), "samples": mixture.samples[k],
                   "lost": mixture.fault_counts(k), "heldout": heldout.get(name),
                   "heldout_split": asdict(split) if (split := getattr(env, "heldout_split", None)) else None}
            for k, (name, env) in enumerate(zip(mixture.names, mixture.envs))}


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


class RolloutMetricsCallback(StepLog):
    """Per step: the rollout's statistics and the loss's (clip fraction, entropy) to `rollouts.jsonl` and the
    tracker; every `heldout_interval` steps, each environment's held-out accuracy too."""

    def __init__(self, path: Path, ctx: StepContext, source: Any, objective: Any, heldout_interval: int = 0) -> None:
        super().__init__(path)
        self.ctx, self.source, self.objective, self.heldout_interval = ctx, source, objective, heldout_interval

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        loss_stats = self.objective.pop_stats()
        tokens = max(loss_stats.get("tokens", 0.0), 1.0)
        record: dict[str, Any] = {"step": metrics.step, **self.source.stats.metrics(), "loss": metrics.loss,
                                  "grad_norm": metrics.grad_norm,
                                  "clip_fraction": loss_stats.get("clipped", 0.0) / tokens,
                                  "train_entropy": loss_stats.get("entropy_sum", 0.0) / tokens,
                                  "rollout": self.source.stats.rollout, "digest": self.source.stats.digest}
        if self.heldout_interval and metrics.step % self.heldout_interval == 0:
            tokens = self.source.config.length_schedule[-1].max_new_tokens
            record.update({f"heldout/{name}/{key}": row[key] for name, row in self.source.heldout(tokens).items()
                           for key in ("accuracy", "stderr")})
        self.append(record)
        numeric = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("step", "rollout")
                   and math.isfinite(v)}
        self.ctx.log_metrics({k if k.startswith("heldout/") else f"rl/{k}": v for k, v in numeric.items()},
                             step=metrics.step)


PLOTTED = ("reward", "accuracy", "entropy", "temperature", "response_length", "kl")


ENV_PLOTTED = ("reward", "pass_rate", "response_length", "entropy", "weight")


def plot_environments(records: list[dict], names: list[str], path: Path) -> None:
    """One panel per per-environment statistic against step, one curve per environment."""
    panels = [f"env/{{}}/{key}" for key in ENV_PLOTTED]
    if any(k.startswith("heldout/") for r in records for k in r):  # per-step held-out curves (heldout_interval)
        panels.append("heldout/{}/accuracy")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), dpi=100)
    for ax, panel in zip(axes.flat, panels):
        for name in names:
            key = panel.format(name)
            points = [(r["step"], r[key]) for r in records
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points), linewidth=1, label=name)
        ax.set_title(panel.split("/", 2)[-1].replace("_", " ") if panel.startswith("env/") else "held-out accuracy")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("GRPO rollouts per environment")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_rewards(records: list[dict], path: Path) -> None:
    """One panel per rollout statistic against step (reward, accuracy, entropy, temperature, response length, KL): one
    curve each, so two that coincide (reward and accuracy under a 0/1 verifier) never hide one another."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), dpi=100)
    for ax, key in zip(axes.flat, PLOTTED):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), linewidth=1)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle("GRPO rollouts")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
