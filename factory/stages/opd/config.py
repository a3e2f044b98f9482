"""The opd stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.train.config import Loop, Precision, with_defaults


class Config(with_defaults(Loop, steps=20, lr=1e-4, warmup_steps=0, decay_fraction=0.0, weight_decay=0.0,
                           checkpoint_interval=5), Precision):
    """On-policy distillation on the training-stage shell's loop and precision parts (no sequence length: the
    student's samples set their own; `micro_batch_size` x `grad_accum` completions per optimizer step, all sampled
    fresh by the student at that step). Defaults: a constant learning rate, as rl's. One process: the student that
    trains is the one that samples."""

    max_new_tokens: int = Field(256, gt=0, description="Most tokens the student samples per completion.")
    temperature: float = Field(1.0, gt=0, description="The student's sampling temperature (the loss compares the "
                                                      "models' own distributions, whatever it is).")
    samples_per_prompt: int = Field(1, ge=1, description="Completions sampled per prompt drawn (micro_batch_size x "
                                                         "grad_accum must be a multiple).")
    reasoning: Literal["on", "off", "both"] = Field(
        "on", description="System prompt of the prompts: detailed thinking on, off, or both (alternating draw by draw).")
    max_prompts: int | None = Field(None, gt=0, description="Use at most this many prompts (the first of prompts.jsonl).")

    @model_validator(mode="after")
    def _step_fits(self) -> Config:
        per_step = self.micro_batch_size * self.grad_accum
        if per_step % self.samples_per_prompt:
            raise ValueError(f"micro_batch_size x grad_accum = {per_step} completions per step must be a multiple of "
                             f"samples_per_prompt {self.samples_per_prompt}")
        return self

    @property
    def samples_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum
