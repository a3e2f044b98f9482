"""The compress stage's knobs as plain pydantic models, importable without torch (loading a spec imports them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.errors import SpecError
from factory.stage import StageConfig

# What the formats a quantize step exports need of every quantized linear's widths: NVFP4 packs 16 values per block
# scale, and the FP8 GEMM kernels engines run (torch._scaled_mm, CUTLASS) take dimensions in multiples of 16.
QUANTIZE_BLOCK = 16

# The dense transformer classes `factory.stages.compress.dense` prunes, besides NemotronH (`surgery`)
DENSE_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM")


class PruneTarget(BaseModel):
    """The shape to prune to; None keeps a dimension as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: int | None = Field(None, gt=0, description="Residual-stream width after pruning.")
    intermediate_size: int | None = Field(None, gt=0, description="MLP neurons per MLP layer after pruning.")
    num_attention_heads: int | None = Field(None, gt=0, description="Query heads per attention layer (a multiple of the KV heads).")
    mamba_num_heads: int | None = Field(None, gt=0, description="Mamba heads per layer (a multiple of the Mamba groups).")
    mamba_head_dim: int | None = Field(None, gt=0, description="Width of one Mamba head after pruning.")
    drop_layers: int = Field(0, ge=0, description="Blocks to remove, least important first.")
    layer_metric: Literal["loss_increase", "block_influence"] = Field(
        "loss_increase", description="Layer ranking for depth pruning: LM-loss increase when dropped, or 1 - cos."
    )


class Budget(BaseModel):
    """What the pruned model must fit: a parameter count, or serving memory at a context length."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_params: int | None = Field(None, gt=0, description="Most parameters the pruned model may have.")
    max_memory_gib: float | None = Field(None, gt=0, description="Most serving memory (GiB) at `context_len` and `batch`.")
    context_len: int = Field(131072, gt=0, description="Serving context (tokens per sequence) for the memory budget.")
    batch: int = Field(1, gt=0, description="Concurrent sequences for the memory budget.")
    weights_format: Literal["bf16", "fp8", "nvfp4", "fp32"] = Field("bf16", description="Number format of the served weights.")
    kv_cache_format: Literal["bf16", "fp8", "fp32"] = Field("bf16", description="Number format of the KV cache.")

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.max_params is None) == (self.max_memory_gib is None):
            raise ValueError("set exactly one of max_params and max_memory_gib")
        return self


class SearchSpace(BaseModel):
    """Width and depth caps whose products are the candidates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_fractions: list[float] = Field([1.0, 0.875, 0.75], min_length=1, description="Residual widths, as fractions of the teacher's.")
    mlp_fractions: list[float] = Field([1.0, 0.75, 0.5], min_length=1, description="MLP widths, as fractions of the teacher's.")
    mamba_head_fractions: list[float] = Field([1.0, 0.75], min_length=1, description="Mamba heads, as fractions (rounded to whole groups).")
    drop_layers: list[int] = Field([0], min_length=1, description="Numbers of layers to drop.")
    multiple_of: int = Field(8, gt=0, description="Widths are rounded down to a multiple of this.")
    max_candidates: int = Field(3, gt=0, description="How many of the largest candidates within budget get a short distillation.")


class Config(StageConfig):
    """Minitron pruning: a fixed `target` shape, or a `budget` searched over `search`."""

    target: PruneTarget | None = Field(None, description="Shape to prune to (exclusive with budget).")
    budget: Budget | None = Field(None, description="Parameter or serving-memory budget to search under (exclusive with target).")
    search: SearchSpace = Field(default_factory=SearchSpace, description="Width/depth caps whose products are the candidates.")
    layer_metric: Literal["loss_increase", "block_influence"] = Field("loss_increase",
                              description="Layer ranking for depth pruning in the search: loss_increase or block_influence.")
    calibration_split: str = Field("train", description="Prefix of the tokens input's indexed dataset used for calibration.")
    validation_split: str = Field("valid", description="Prefix of the tokens input's indexed dataset that ranks candidates.")
    calibration_samples: int = Field(32, gt=0, description="Calibration windows to use; fewer available is an error.")
    validation_samples: int = Field(16, gt=0, description="Validation windows that rank the candidates (at most).")
    seq_len: int = Field(64, gt=0, description="Tokens per calibration window.")
    batch_size: int = Field(8, gt=0, description="Windows per calibration forward pass.")
    candidate_steps: int = Field(20, gt=0, description="Distillation steps given to each candidate in the search.")
    candidate_lr: float = Field(1e-3, gt=0, description="Peak learning rate of the candidates' short distillation.")
    seed: int = Field(0, description="Seed of the candidates' distillation.")
    width_multiple_of: int | None = Field(
        None, gt=0, description="Every width pruning sets (hidden size, MLP width, attention and Mamba inner widths) is a "
        "multiple of this. A spec with a quantize step sets it to 16 (NVFP4 blocks, FP8 GEMM kernels) and the search's "
        "multiple_of with it unless given; None: no constraint.")

    @model_validator(mode="after")
    def _one(self) -> Config:
        if (self.target is None) == (self.budget is None):
            raise ValueError("set exactly one of target and budget")
        return self

    @model_validator(mode="after")
    def _widths_fit_the_export(self) -> Config:
        m = self.width_multiple_of
        if m is None:
            return self
        why = f"not a multiple of width_multiple_of = {m} (the block size of the formats a quantize step exports)"
        if self.target is not None:
            widths = {"hidden_size": self.target.hidden_size, "intermediate_size": self.target.intermediate_size}
            for name, value in widths.items():
                if value is not None and value % m:
                    raise ValueError(f"target.{name}: {value} is {why}; use {value // m * m or m} or {(value // m + 1) * m}")
        elif self.search.multiple_of % m:
            raise ValueError(f"search.multiple_of: {self.search.multiple_of} would choose widths {why}; use {m} or a multiple of it")
        return self


def spec_defaults(config: dict[str, Any], spec: Any) -> dict[str, Any]:
    """With a quantize step in the spec, pruned widths must fit its formats' blocks: `width_multiple_of` 16, and the
    budget search's rounding with it, unless the step's config names them (then they are checked as given)."""
    if "width_multiple_of" in config or not _quantizes(spec.data):
        return config
    out = {**config, "width_multiple_of": QUANTIZE_BLOCK}
    search = config.get("search")
    if config.get("budget") is not None and (search is None or (isinstance(search, dict) and "multiple_of" not in search)):
        out["search"] = {**(search or {}), "multiple_of": QUANTIZE_BLOCK}
    return out


def _quantizes(data: Any) -> bool:
    """Whether the raw spec runs a quantize step (a `stages.quantize` mapping, or a named step of kind quantize)."""
    if not isinstance(data, dict):
        return False
    stages, steps = data.get("stages"), data.get("steps")
    return (isinstance(stages, dict) and isinstance(stages.get("quantize"), dict)) or (
        isinstance(steps, dict) and any(isinstance(s, dict) and s.get("kind") == "quantize" for s in steps.values()))


def check_architecture(config: Config, architecture: str, step: str) -> None:
    """The registry's `check_architecture` hook: when the spec is planned, refuse the settings a dense transformer
    (`DENSE_ARCHITECTURES`) has nothing to apply to, in one line naming the step, the field and the architecture. The
    target's sizes against the model's are checked when the step starts, before any weight is read."""
    if architecture not in DENSE_ARCHITECTURES:
        return
    if config.budget is not None:
        if "mamba_head_fractions" in config.search.model_fields_set:
            raise SpecError(f"step {step}: search.mamba_head_fractions: {architecture} has no Mamba layers; leave it unset")
        return
    for name in ("mamba_num_heads", "mamba_head_dim"):
        if config.target is not None and getattr(config.target, name) is not None:
            raise SpecError(f"step {step}: target.{name}: {architecture} has no Mamba layers; leave it unset")
