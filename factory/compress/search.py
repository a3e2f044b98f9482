"""Architecture search under a budget (Nemotron Nano 2's Minitron step, in miniature).

Candidates are the products of width and depth caps (residual width, MLP width, Mamba heads as fractions
of the teacher's; a number of layers to drop). Each candidate's size comes from `factory.cost`: parameters,
or serving memory at a context length (weights + KV cache of the attention layers + Mamba conv and SSM
states). Those within the budget are ranked largest first; the stage then distils each of the first few
briefly and keeps the one with the lowest validation loss.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.compress.surgery import PruneTarget
from factory.errors import SpecError


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


@dataclass(frozen=True)
class Candidate:
    target: PruneTarget
    params: int
    memory: dict[str, int]  # bytes: weights, kv_cache, mamba_conv, mamba_ssm

    @property
    def memory_total(self) -> int:
        return sum(self.memory.values())


def _round(value: float, multiple: int, floor: int) -> int:
    return max(floor, int(value) // multiple * multiple)


def candidates(hf_config, importance, space: SearchSpace, budget: Budget, layer_metric: str = "loss_increase") -> list[Candidate]:
    """Every candidate of `space` with its size, within `budget`, largest first. Depth candidates drop the
    least important layers of `importance` (so a candidate's size counts the layer kinds it really keeps).

    Raises `SpecError` when none fits, naming the smallest candidate's size.
    """
    from factory.compress.surgery import kept_layers, pruned_config
    from factory.cost import parameter_counts, serving_memory

    c = hf_config
    found: dict[PruneTarget, Candidate] = {}
    for fh, fm, fmh, drop in itertools.product(space.hidden_fractions, space.mlp_fractions, space.mamba_head_fractions, space.drop_layers):
        if drop >= len(c.layers_block_type):
            continue
        target = PruneTarget(
            hidden_size=_round(c.hidden_size * fh, space.multiple_of, space.multiple_of),
            intermediate_size=_round(c.intermediate_size * fm, space.multiple_of, space.multiple_of),
            mamba_num_heads=_round(c.mamba_num_heads * fmh, c.n_groups, c.n_groups),
            drop_layers=drop,
            layer_metric=layer_metric,  # type: ignore[arg-type]
        )
        shape = pruned_config(c, target, kept_layers(c, importance, target))
        memory = serving_memory(shape, budget.context_len, budget.batch, weights=budget.weights_format, kv_cache=budget.kv_cache_format)
        found[target] = Candidate(target, parameter_counts(shape).total, memory.terms())
    ranked = sorted(found.values(), key=lambda cand: (cand.params, cand.memory_total), reverse=True)
    fits = [cand for cand in ranked if _within(cand, budget)]
    if not fits:
        smallest = ranked[-1]
        size = f"{smallest.params} parameters" if budget.max_params else f"{smallest.memory_total / 1024**3:.3f} GiB"
        limit = f"max_params={budget.max_params}" if budget.max_params else f"max_memory_gib={budget.max_memory_gib}"
        raise SpecError(f"budget.{limit.split('=')[0]}: no candidate meets {limit}; the smallest in the search space has {size}. "
                        "Raise the budget or add smaller fractions / more drop_layers to the search space")
    return fits


def _within(cand: Candidate, budget: Budget) -> bool:
    if budget.max_params is not None:
        return cand.params <= budget.max_params
    return cand.memory_total <= budget.max_memory_gib * 1024**3  # type: ignore[operator]
