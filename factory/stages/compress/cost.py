"""What a compress step costs (`factory plan`), and the shape of the model it makes, which distill and later steps
plan with.

Importance: one forward of the teacher over the calibration windows, and one more per layer (each layer's loss
increase when skipped). With `target`, the student has the target's sizes; with `budget`, the candidates are the
search space's shapes within the budget, largest first (as `factory.stages.compress.search` ranks them), the
largest taken as the student (an upper bound: a smaller candidate may distil better) and the first
`search.max_candidates` distilled for `candidate_steps` steps of `batch_size` windows each (student forward and
backward, teacher forward). Which layers go when layers are dropped depends on the measured importance: the plan
drops the pattern's most common layer kind (the first of them on a tie), from the end.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from factory.cost.estimate import PlanContext, PlannedModel, StepCost
from factory.cost.flops import flops_per_token
from factory.cost.memory import serving_memory, training_memory
from factory.cost.param_count import parameter_counts
from factory.cost.shape import as_shape
from factory.cost.workload import forward_flops, weight_bytes
from factory.model import ModelConfig, ModelSpec
from factory.stages.compress.config import Budget, PruneTarget
from factory.stages.compress.search import Candidate, _round, _within, mamba_head_step

# PruneTarget's sizes as `Shape` calls them
_SHAPE_FIELDS = {"hidden_size": "hidden", "intermediate_size": "mlp_hidden", "num_attention_heads": "heads",
                 "mamba_num_heads": "mamba_heads", "mamba_head_dim": "mamba_head_dim"}


def pruned(model: PlannedModel, target: PruneTarget) -> PlannedModel:
    """`model` with `target`'s sizes and `target.drop_layers` fewer layers of its most common kind (from the end); a
    dense decoder's layers, attention and MLP together."""
    config = model.config.resolve() if isinstance(model.config, ModelSpec) else model.config
    pattern = config.pattern if isinstance(config, ModelConfig) else as_shape(config, model.vocab_size).pattern
    dense = not isinstance(config, ModelConfig) and as_shape(config, model.vocab_size).mlp_matrices == 3
    if target.drop_layers and dense:  # a dense decoder's layer ("*-": attention and MLP) goes whole
        pattern = pattern[: max(len(pattern) - 2 * target.drop_layers, 2)]
    elif target.drop_layers:
        kind = max(pattern, key=pattern.count)  # the first of the most common kinds
        keep = list(pattern)
        for _ in range(min(target.drop_layers, pattern.count(kind))):
            keep.pop(len(keep) - 1 - keep[::-1].index(kind))
        pattern = "".join(keep)
    sizes = {k: getattr(target, k) for k in _SHAPE_FIELDS if getattr(target, k) is not None}
    if isinstance(config, ModelConfig):
        return PlannedModel(config.model_copy(update={**sizes, "pattern": pattern}), model.vocab_size)
    shape = as_shape(config, model.vocab_size)
    return PlannedModel(dataclasses.replace(shape, pattern=pattern, **{_SHAPE_FIELDS[k]: v for k, v in sizes.items()}),
                        model.vocab_size)


def candidates(teacher: PlannedModel, cfg: Any) -> list[Candidate]:
    """The search space's candidates within `cfg.budget`, largest first (none: the smallest of them)."""
    s, space, budget = as_shape(teacher.config, teacher.vocab_size), cfg.search, cfg.budget
    heads = mamba_head_step(s.groups, s.mamba_head_dim, cfg.width_multiple_of)
    found = {}
    for fh, fm, fmh, drop in itertools.product(space.hidden_fractions, space.mlp_fractions, space.mamba_head_fractions,
                                               space.drop_layers):
        if drop >= len(s.pattern):
            continue
        target = PruneTarget(hidden_size=_round(s.hidden * fh, space.multiple_of, space.multiple_of),
                             intermediate_size=_round(s.mlp_hidden * fm, space.multiple_of, space.multiple_of),
                             mamba_num_heads=_round(s.mamba_heads * fmh, heads, heads), drop_layers=drop)
        student = pruned(teacher, target).config
        memory = _serving(student, budget, teacher.vocab_size)
        found[target] = Candidate(target, parameter_counts(student, teacher.vocab_size).total, memory.terms())
    ranked = sorted(found.values(), key=lambda c: (c.params, c.memory_total), reverse=True)
    return [c for c in ranked if _within(c, budget)] or ranked[-1:]


def _serving(model: Any, budget: Budget, vocab: int):
    return serving_memory(model, budget.context_len, budget.batch, weights=budget.weights_format,
                          kv_cache=budget.kv_cache_format, vocab_size=vocab)


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    teacher = plan.model_of(step)
    layers = len(as_shape(teacher.config, teacher.vocab_size).pattern)
    calibration = cfg.calibration_samples * cfg.seq_len
    work = {"importance": (1 + layers) * forward_flops(teacher, calibration, cfg.seq_len)}
    notes = []
    if cfg.target is not None:
        student = pruned(teacher, cfg.target)
        distilled = 0
    else:
        fits = candidates(teacher, cfg)
        student = pruned(teacher, fits[0].target)
        distilled = min(len(fits), cfg.search.max_candidates)
        notes.append(f"{distilled} candidates distilled; the student costed as the largest within the budget")
    tokens = distilled * cfg.candidate_steps * cfg.batch_size * cfg.seq_len
    if distilled:
        work["distillation"] = (flops_per_token(student.config, cfg.seq_len, vocab_size=student.vocab_size).training
                                * tokens + forward_flops(teacher, tokens, cfg.seq_len))
        work["validation"] = 2 * distilled * forward_flops(student, cfg.validation_samples * cfg.seq_len, cfg.seq_len)
    memory = {"teacher": weight_bytes(teacher)}
    if distilled:  # a candidate's distillation step beside the teacher
        train = training_memory(student.config, seq_len=cfg.seq_len, micro_batch=cfg.batch_size,
                                vocab_size=student.vocab_size)
        memory.update({f"student {k}": v for k, v in train.terms().items()})
        total = memory["teacher"] + train.total
    else:
        memory["student"] = weight_bytes(student)
        total = sum(memory.values())
    flops = sum(work.values())
    params = parameter_counts(student.config, student.vocab_size).total
    notes.insert(0, "FLOPs " + ", ".join(f"{k} {v / flops:.0%}" for k, v in work.items()))
    return plan.cost(step, data={"params_before": parameter_counts(teacher.config, teacher.vocab_size).total,
                                 "params_after": params, "calibration_tokens": calibration, "distilled_tokens": tokens},
                     flops=flops, memory=memory, memory_total=total, estimated=True, model=student,
                     note="; ".join(notes), **plan.timed(step.name, flops, "fp32"))
