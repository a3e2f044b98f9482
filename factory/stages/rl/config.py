"""The rl stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.chat.records import VerifierName
from factory.envs.config import CurriculumConfig, EnvironmentConfig, WeightStage
from factory.envs.verifiers import RewardConfig
from factory.generate.settings import GeneratorSettings
from factory.judge.config import check_judge_input
from factory.train.config import Loop, Precision, with_defaults


class LengthStage(BaseModel):
    """One stage of the response-length schedule (AceReason grows it: 8k, 16k, 24k, 32k tokens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    until_fraction: float = Field(gt=0, le=1, description="This stage ends after this fraction of the run's steps.")
    max_new_tokens: int = Field(gt=0, description="Most tokens a completion may have during this stage.")


class RolloutConfig(BaseModel):
    """How rollouts are sampled, filtered and tempered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_size: int = Field(8, ge=2, description="Completions sampled per prompt (G).")
    length_schedule: list[LengthStage] = Field(
        default_factory=lambda: [LengthStage(until_fraction=1.0, max_new_tokens=256)],
        description="Growing maximum response length: stages in order, the last ending at 1.0.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the first rollout.")
    target_entropy: float | None = Field(0.3, gt=0, description="Entropy of the tempered distribution the temperature "
                                                                "controller holds (AceReason 1.1 uses 0.3); None: fixed temperature.")
    temperature_rate: float = Field(0.1, ge=0, description="Controller gain: log-temperature change per unit of relative entropy error.")
    temperature_range: tuple[float, float] = Field((0.6, 1.5), description="Bounds the controller keeps the temperature in.")
    dynamic_sampling: bool = Field(True, description="Drop groups whose rewards are all equal and sample more prompts (DAPO).")
    max_sampling_rounds: int = Field(4, ge=1, description="Most sampling rounds to fill one rollout batch with informative groups.")
    filter_overlong: bool = Field(True, description="Truncated completions take no loss (DAPO's overlong filtering).")
    scale_advantages: bool = Field(True, description="Divide advantages by the group's std (False: Dr. GRPO's unscaled form).")
    reasoning: Literal["on", "off", "both"] = Field(
        "on", description="System prompt of RL prompts: detailed thinking on, off, or both (alternating draw by draw).")
    switch_format: bool = Field(True, description="A reply that breaks the reasoning switch (no <think> block under "
                                                  "'on', one under 'off') scores 0; tool prompts keep Tool-N1's format.")
    generator: GeneratorSettings = Field(
        default_factory=GeneratorSettings, description="Who samples: 'transformers', the policy being trained, in this "
        "process; 'openai': an OpenAI-compatible server (base_url, model) that loads each published policy.")
    reload_url: str | None = Field(None, description="openai: POSTed {model_dir, step} after each publish; None: no reload "
                                                     "(the server must then see the policy folder some other way).")
    publish_dir: str | None = Field(None, description="openai: where the policy folder is written (a path the server can "
                                                      "read); None: `policy/` in the step's output folder.")

    @model_validator(mode="before")
    @classmethod
    def _endpoint_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "endpoint" in data:
            raise ValueError("endpoint: rollouts from a server are set in rollout.generator now ({kind: openai, base_url, "
                             "model, max_concurrency, timeout_s}), with rollout.reload_url and rollout.publish_dir")
        return data

    @model_validator(mode="after")
    def _checked(self) -> RolloutConfig:
        if self.generator.kind == "transformers":
            stray = sorted({"model_dir", "dtype", "device", "batch_size"} & self.generator.changed())
            stray = [f"generator.{f}" for f in stray] + [f for f in ("reload_url", "publish_dir") if getattr(self, f)]
            if stray:
                raise ValueError(f"{', '.join(stray)}: the local sampler is the policy being trained, one group per "
                                 "batch; these apply to generator kind 'openai' only (or not at all)")
        ends = [s.until_fraction for s in self.length_schedule]
        if not ends or ends != sorted(set(ends)) or ends[-1] != 1.0:
            raise ValueError(f"length_schedule: until_fraction must increase strictly and end at 1.0, got {ends}")
        low, high = self.temperature_range
        if not 0 < low <= self.temperature <= high:
            raise ValueError(f"temperature {self.temperature} must lie in temperature_range {self.temperature_range}")
        return self

    def max_new_tokens(self, fraction: float) -> int:
        """The length limit at `fraction` of the run's steps."""
        return next((s.max_new_tokens for s in self.length_schedule if fraction < s.until_fraction),
                    self.length_schedule[-1].max_new_tokens)


class Config(with_defaults(Loop, steps=20, lr=1e-4, warmup_steps=0, decay_fraction=0.0, weight_decay=0.0,
                           checkpoint_interval=5), Precision):
    """GRPO on the training-stage shell's loop and precision parts (no sequence length: rollouts set their own
    lengths; `micro_batch_size` x `grad_accum` completions per optimizer step), plus the loss, rollout and reward
    knobs. Defaults: a constant learning rate, as RL runs use. One process: the rollouts come from the one policy copy
    it trains, or from a server (`rollout.generator` of kind openai)."""

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
    environments: list[EnvironmentConfig] | None = Field(
        None, description="Train on these environments at once (factory.envs: task source, scorer, tools, limits, "
                          "weight); None: one environment, the data input's prompts (filtered by `verifiers`).")
    weight_schedule: list[WeightStage] = Field(
        default_factory=list, description="Environment weights by stage of the run ({until_fraction, weights: {name: w}}), "
                                          "the last ending at 1.0; empty: each environment's own weight throughout.")
    curriculum: CurriculumConfig | None = Field(
        None, description="Drop environments the policy saturated or that give no signal (zero-variance groups over a "
                          "window); None: keep every environment.")
    heldout_interval: int = Field(0, ge=0, description="With environments: also score every environment's held-out "
                                                       "tasks every this many steps (per-step curves); 0: at the end only.")
    error_budget: float = Field(0.1, ge=0, le=1, description="Share of an environment's samples its faults (raised, "
                                                              "timeout, malformed reward) may cost before it is dropped.")

    @model_validator(mode="after")
    def _rollout_fits(self) -> Config:
        per_rollout = self.samples_per_rollout
        if per_rollout % self.rollout.group_size:
            raise ValueError(f"steps_per_rollout x micro_batch_size x grad_accum = {per_rollout} samples per rollout "
                             f"must be a multiple of rollout.group_size {self.rollout.group_size}")
        return self

    @model_validator(mode="after")
    def _environments_checked(self) -> Config:
        envs = self.environments
        if envs is None:
            stray = [f for f in ("weight_schedule", "curriculum", "heldout_interval") if getattr(self, f)]
            if stray:
                raise ValueError(f"{', '.join(stray)}: a mixture setting needs `environments` (the data input alone "
                                 "is one environment)")
            return self
        if not envs:
            raise ValueError("environments: list at least one environment (or leave it out to train on the data input)")
        stray = [f for f in ("verifiers", "max_prompts") if getattr(self, f) is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)}: these pick the data input's prompts when there are no `environments`; "
                             "with environments use an environment {name, data: VERIFIER}")
        names = [e.name for e in envs]
        if len(set(names)) != len(names):
            raise ValueError(f"environments: names must be unique, got {names}")
        if sum(e.weight for e in envs) <= 0:
            raise ValueError("environments: the weights sum to 0")
        ends = [s.until_fraction for s in self.weight_schedule]
        if ends and (ends != sorted(set(ends)) or ends[-1] != 1.0):
            raise ValueError(f"weight_schedule: until_fraction must increase strictly and end at 1.0, got {ends}")
        unknown = sorted({n for s in self.weight_schedule for n in s.weights} - set(names))
        if unknown:
            raise ValueError(f"weight_schedule: {unknown} {'is' if len(unknown) == 1 else 'are'} not environments "
                             f"of this step ({names})")
        if self.curriculum is not None and self.curriculum.min_environments > len(envs):
            raise ValueError(f"curriculum.min_environments {self.curriculum.min_environments} is more than the "
                             f"{len(envs)} environments")
        turns = [e.name for e in envs if e.limits.max_turns > 1]
        if turns and self.rollout.generator.kind != "transformers":
            raise ValueError(f"environments {turns}: multi-turn episodes continue from the sampled tokens, which only "
                             "the in-process sampler (rollout.generator kind transformers) gives")
        return self

    @property
    def input_judges(self) -> list[int]:
        """The environments (by index) whose judge is the step's `judge` input (kind transformers without model_dir);
        they share it."""
        return [i for i, e in enumerate(self.environments or ()) if e.judge is not None and e.judge.from_input]

    def check_wiring(self, inputs: Mapping[str, str]) -> None:
        check_judge_input([f"environments.{i}.judge" for i in self.input_judges], inputs, "judge",
                          "no environment's judge", "give an environment `scorer: judge` with a judge of kind "
                          "transformers without model_dir")

    def with_judge_model(self, folder: str | Path) -> Config:
        """The same step whose environments' judges without a model folder read `folder` (the `judge` input's
        `model/`); the others unchanged."""
        judged = set(self.input_judges)
        if not judged:
            return self
        envs = [e.model_copy(update={"judge": e.judge.with_model(folder)}) if i in judged else e  # type: ignore[union-attr]
                for i, e in enumerate(self.environments or ())]
        return self.model_copy(update={"environments": envs})

    @classmethod
    def external_fields(cls) -> list[str]:
        # the task files and JSONL an environment reads are raw inputs (a nested list field is not read for them)
        return [*super().external_fields(), "environment_files"]

    @property
    def environment_files(self) -> list[str]:
        """The files the environments read: raw inputs of the step."""
        return list(dict.fromkeys(f for e in self.environments or () for f in e.files))

    @property
    def samples_per_rollout(self) -> int:
        return self.steps_per_rollout * self.micro_batch_size * self.grad_accum
