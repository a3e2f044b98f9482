"""The rl stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from pydantic import Field, model_validator

from factory.chat.records import VerifierName
from factory.stages.rl.rewards import RewardConfig
from factory.stages.rl.rollout import RolloutConfig
from factory.train.config import Loop, Precision, with_defaults


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
