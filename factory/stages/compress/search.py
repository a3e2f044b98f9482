"""Architecture search under a budget (Nemotron Nano 2's Minitron step, in miniature).

Candidates are the products of width and depth caps (residual width, MLP width, Mamba heads as fractions
of the teacher's; a number of layers to drop). Each candidate's size comes from `factory.cost`: parameters,
or serving memory at a context length (weights + KV cache of the attention layers + Mamba conv and SSM
states). Those within the budget are ranked largest first; the stage then distils each of the first few
briefly and keeps the one with the lowest validation loss.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from factory.cost import parameter_counts, serving_memory
from factory.errors import SpecError
from factory.stages.compress.config import Budget, PruneTarget, SearchSpace
from factory.stages.compress.surgery import kept_layers, pruned_config


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


def mamba_head_step(groups: int, head_dim: int, width_multiple_of: int | None) -> int:
    """The Mamba head counts a candidate may have are multiples of this: whole groups, and with `width_multiple_of` an
    inner width (heads x head width) that is a multiple of it."""
    if not width_multiple_of:
        return groups
    return math.lcm(groups, width_multiple_of // math.gcd(width_multiple_of, head_dim))


def candidates(hf_config, importance, space: SearchSpace, budget: Budget, layer_metric: str = "loss_increase",
               width_multiple_of: int | None = None) -> list[Candidate]:
    """Every candidate of `space` with its size, within `budget`, largest first. Depth candidates drop the
    least important layers of `importance` (so a candidate's size counts the layer kinds it really keeps).

    Raises `SpecError` when none fits, naming the smallest candidate's size.
    """
    c = hf_config
    heads = mamba_head_step(c.n_groups, c.mamba_head_dim, width_multiple_of)
    found: dict[PruneTarget, Candidate] = {}
    for fh, fm, fmh, drop in itertools.product(space.hidden_fractions, space.mlp_fractions, space.mamba_head_fractions, space.drop_layers):
        if drop >= len(c.layers_block_type):
            continue
        target = PruneTarget(
            hidden_size=_round(c.hidden_size * fh, space.multiple_of, space.multiple_of),
            intermediate_size=_round(c.intermediate_size * fm, space.multiple_of, space.multiple_of),
            mamba_num_heads=_round(c.mamba_num_heads * fmh, heads, heads),
            drop_layers=drop,
            layer_metric=layer_metric,  # type: ignore[arg-type]
        )
        shape = pruned_config(c, target, kept_layers(c, importance, target))
        memory = serving_memory(shape, budget.context_len, budget.batch, weights=budget.weights_format, kv_cache=budget.kv_cache_format)
        found[target] = Candidate(target, parameter_counts(shape).total, memory.terms())
    ranked = sorted(found.values(), key=lambda cand: (cand.params, cand.memory_total), reverse=True)
    fits = [cand for cand in ranked if _within(cand, budget)]
    if not fits:
        raise no_fit(ranked[-1], budget)
    return fits


def no_fit(smallest: Candidate, budget: Budget) -> SpecError:
    """The error of a budget no candidate meets, naming the smallest candidate's size."""
    size = f"{smallest.params} parameters" if budget.max_params else f"{smallest.memory_total / 1024**3:.3f} GiB"
    limit = f"max_params={budget.max_params}" if budget.max_params else f"max_memory_gib={budget.max_memory_gib}"
    return SpecError(f"budget.{limit.split('=')[0]}: no candidate meets {limit}; the smallest in the search space has {size}. "
                     "Raise the budget or add smaller fractions / more drop_layers to the search space")


def _within(cand: Candidate, budget: Budget) -> bool:
    if budget.max_params is not None:
        return cand.params <= budget.max_params
    return cand.memory_total <= budget.max_memory_gib * 1024**3  # type: ignore[operator]
