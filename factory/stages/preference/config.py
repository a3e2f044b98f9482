"""The preference stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from factory.judge.config import JudgeConfig, check_judge_input
from factory.train.config import Loop, Parallelism, Precision, Sequences, with_defaults


class Config(with_defaults(Loop, micro_batch_size=4, steps=100, lr=1e-5, warmup_steps=5, weight_decay=0.0,
                           checkpoint_interval=20), Precision, Parallelism, with_defaults(Sequences, seq_len=512)):
    """Preference optimisation on the training-stage shell's parts: how pairs are made, and the loss. `seq_len` is the
    most tokens of prompt + completion (longer prompts are skipped and counted); `micro_batch_size` is pairs per
    pass (per rank under torchrun)."""

    loss: Literal["dpo", "rpo"] = Field("dpo", description="dpo: sigmoid DPO; rpo: reward-aware preference optimisation.")
    beta: float = Field(0.1, gt=0, description="Scale of the implicit reward beta * log(pi / pi_ref).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="DPO only: share of pairs assumed flipped (cDPO).")
    rpo_distance: Literal["sq", "bwd_kl", "fwd_kl"] = Field(
        "bwd_kl", description="RPO only: distance between the policy's margin and eta times the reward gap "
        "(bwd_kl: Nemotron-4's KL(target || policy); NeMo-Aligner's rpo_sq, rpo_bwd_kl, rpo_fwd_kl).")
    eta: float = Field(1.0, gt=0, description="RPO only: scale of the pair's reward gap (NeMo-Aligner's gt_reward_scale).")

    judge: Literal["verifier", "reward_model", "genrm"] = Field(
        "verifier", description="Who ranks the samples: the prompts' verifiers, the reward_model input, or a generative "
        "reward model (`genrm`) comparing two samples of a prompt at a time.")
    genrm: JudgeConfig | None = Field(
        None, description="judge genrm: the generative reward model (factory.judge, mode pairwise: Nemotron 3's GenRM; "
        "kind transformers without model_dir: the step's `judge` input), "
        "which compares samples 0 and 1, 2 and 3, ... of each prompt; the sample it prefers is chosen, ties and "
        "malformed verdicts give no pair and are counted; above its error_budget of malformed verdicts the step fails.")
    reward_weights: dict[str, float] = Field(
        default_factory=lambda: {"helpfulness": 1.0},
        description="judge reward_model: the reward is this weighted sum of the reward model's attributes.")
    min_reward_gap: float = Field(0.0, ge=0, description="judge reward_model: least reward gap of a pair.")
    responses_file: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="A JSONL file of {prompt_id, responses: [2 or more texts]}: the responses judged and paired, read "
        "instead of sampled from the policy (ids of the data input's prompts.jsonl and heldout.jsonl; a prompt without "
        "a line gives no pair and is counted); None: the policy samples `samples_per_prompt` per prompt.")
    samples_per_prompt: int = Field(4, ge=2, description="Completions the policy samples per prompt.")
    pairs_per_prompt: int = Field(1, ge=1, description="Most pairs taken from one prompt's samples.")
    max_prompts: int | None = Field(None, gt=0, description="Use at most this many training prompts (the first ones).")
    heldout_prompts: int = Field(32, ge=0, description="Held-out prompts whose pairs measure the margin (0 = none).")
    reasoning: Literal["on", "off"] = Field("off", description="The reasoning switch the prompts are rendered with.")
    max_new_tokens: int = Field(256, gt=0, description="Most tokens per sampled completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    generation_batch: int = Field(16, gt=0, description="Prompts (of one token length) sampled together.")

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if self.responses_file is not None:
            # read responses are not sampled: the sampling fields would be ignored, so they are refused
            sampling = ("samples_per_prompt", "max_new_tokens", "temperature", "top_p", "generation_batch")
            changed = [f for f in sampling if getattr(self, f) != type(self).model_fields[f].default]
            if changed:
                raise ValueError(f"{', '.join(changed)} set how the policy samples; with responses_file the responses "
                                 "are read, not sampled: remove them")
            return self
        if self.max_new_tokens >= self.seq_len:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be below seq_len ({self.seq_len}), "
                             "which also holds the prompt")
        return self

    @model_validator(mode="after")
    def _genrm(self) -> Config:
        if (self.judge == "genrm") != (self.genrm is not None):
            raise ValueError("genrm: set it exactly when judge is 'genrm' (it is the judge that ranks the samples)")
        if self.genrm is not None:
            if self.genrm.mode != "pairwise":
                raise ValueError("genrm.mode: the GenRM compares two samples of a prompt; set mode 'pairwise'")
            if self.min_reward_gap != 0.0 or self.reward_weights != {"helpfulness": 1.0}:
                raise ValueError("min_reward_gap and reward_weights rank a reward model's scores; with judge 'genrm' "
                                 "a pair is whatever the GenRM prefers: remove them")
        return self

    @classmethod
    def external_fields(cls) -> list[str]:
        # the GenRM's prompt file (by path) and local model folder are raw inputs (a nested optional config is not
        # read for them, so they are named here)
        return [*super().external_fields(), "genrm_files"]

    @property
    def genrm_files(self) -> list[str]:
        return self.genrm.raw_inputs() if self.genrm is not None else []

    def required_inputs(self) -> set[str]:
        return {"reward_model"} if self.judge == "reward_model" else set()

    def check_wiring(self, inputs: Mapping[str, str]) -> None:
        reads = self.genrm is not None and self.genrm.from_input
        check_judge_input(["genrm"] if reads else [], inputs, "GenRM", "nothing",
                          "only judge 'genrm' with a genrm generator of kind transformers without model_dir does: set that")
