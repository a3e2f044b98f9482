"""The quantize stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from factory.stage import StageConfig
from factory.tasks.sets import builtin_sets

Variant = Literal["fp8", "nvfp4", "mixed"]


class Config(StageConfig):
    """PTQ variants, exclusions, calibration and gates."""

    variants: list[Variant] = Field(["fp8", "nvfp4"], min_length=1, description="Variants to export: fp8, nvfp4, mixed.")
    kv_cache_fp8: bool = Field(True, description="Calibrate FP8 KV-cache scales (k_scale, v_scale) for attention layers.")
    exclude: list[str] = Field([], description="fnmatch patterns of linear names kept in BF16 (besides lm_head, routers, conv1d).")
    preset: Literal["none", "nemotron"] = Field(
        "none", description="'nemotron': also keep the attention layers and the Mamba layers that feed them in BF16, "
        "as NVIDIA's Nemotron-H FP8/NVFP4 checkpoints do.")
    compressed_tensors: bool = Field(True, description="Also export the fp8 and nvfp4 variants as compressed-tensors checkpoints "
                                     "(fp8-compressed-tensors/, nvfp4-compressed-tensors/) that stock transformers loads on CPU.")
    bits_budget: float = Field(6.0, ge=4.5, le=16, description="Effective bits per quantizable weight for the mixed variant.")
    calibration_split: str = Field("train", description="Prefix of the tokens input's indexed dataset used to calibrate.")
    calibration_samples: int = Field(32, gt=0, description="Calibration windows; fewer available is an error.")
    eval_split: str = Field("valid", description="Prefix of the tokens input's indexed dataset for the perplexity gates.")
    eval_samples: int = Field(32, gt=0, description="Perplexity windows (at most).")
    seq_len: int = Field(64, gt=0, description="Tokens per window.")
    max_ppl_increase: dict[str, float] = Field(
        {"fp8": 0.01, "nvfp4": 0.03, "mixed": 0.03},
        description="Gate per variant: largest allowed relative perplexity increase over BF16 (0.01 = 1%).")
    tasks: list[str] = Field(["stdlib_cloze"], description="Built-in cloze sets (factory/tasks/sets) scored on BF16 and every variant; [] for none.")
    task_files: list[str] = Field([], description="Further cloze set files (JSONL of id, context, target) scored the same way.")
    task_seq_len: int = Field(128, gt=1, description="Tokens per scored task item (the context is cut on the left).")
    max_accuracy_drop: dict[str, float] = Field(
        {}, description="Gate per variant (fp8, nvfp4, mixed): largest allowed drop of task accuracy below BF16's on any set, "
        "in accuracy units (0.02 = 2 points); variants not named are not gated on accuracy.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in builtin_sets()]
        if unknown:
            raise ValueError(f"unknown built-in sets {unknown}; built-in sets: {builtin_sets()}")
        return tasks

    @model_validator(mode="after")
    def _gates(self) -> Config:
        missing = [v for v in self.variants if v not in self.max_ppl_increase]
        if missing:
            raise ValueError(f"max_ppl_increase has no gate for variants {missing}")
        stray = sorted(set(self.max_accuracy_drop) - {"fp8", "nvfp4", "mixed"})
        if stray:
            raise ValueError(f"max_accuracy_drop: unknown variants {stray}; variants are fp8, nvfp4, mixed")
        return self
