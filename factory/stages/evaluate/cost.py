"""What an evaluate step costs (`factory plan`): forward passes and generated tokens, an estimate, and the memory of
serving the model at the evaluation context.

Perplexity: the held-out tokens of the tokens input (a published build's count, else tokenize's estimate), at most
`max_batches` x `batch_size` windows; none with `perplexity` off. Evaluation sets: every item counted at `seq_len` (an
upper bound), an lm-eval task's every continuation of every doc (one forward each) too. Generation:
every prompt at `max_new_tokens`, every benchmark item `samples` times at `generation.max_new_tokens` (upper bounds),
on the model when the generator is the checkpoint evaluated. A judge that is the `judge` input costs its verdicts on
that input's model (one per item, two with both orders; a prompt of `PROMPT_TOKENS` plus the answer, and the reference
response when pairwise, then its `max_new_tokens`); another judge's are not counted. Throughput measurements are not
counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.cost.estimate import NotCosted, PlanContext, PlannedModel, StepCost
from factory.cost.memory import serving_memory
from factory.cost.workload import PROMPT_TOKENS, count_records, forward_flops, generation_flops
from factory.errors import UserError
from factory.tasks.lm_eval_task import build_requests, read_lm_eval_task
from factory.tasks.sets import builtin_path


def _benchmark_items(bench: Any) -> int | None:
    if bench.limit is not None:
        return bench.limit
    if bench.source == "procedural":
        return bench.size
    return count_records([bench.task]) if bench.source in ("file", "questions") else None


def _lm_eval_requests(paths: list[str]) -> int | None:
    """Continuations the lm-eval tasks score (rendered as the stage renders them), None when a task's docs cannot be
    read here."""
    try:
        return sum(len(r.continuations) for path in paths for r in build_requests(read_lm_eval_task(Path(path))))
    except UserError:
        return None


def _judge_model(step: Any, plan: PlanContext) -> PlannedModel | None:
    """The `judge` input's planned model, None when its shape is not known (an architecture the plan cannot cost)."""
    try:
        return plan.model_of(step, "judge")
    except NotCosted:
        return None


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    model = plan.model_of(step)
    device = plan.device(step.name)
    ctx = plan.context or cfg.seq_len
    mem = serving_memory(model.config, ctx, cfg.batch_size, weights="fp32" if device.name == "cpu" else "bf16",
                         vocab_size=model.vocab_size)
    tokens = plan.upstream(step, "tokens")
    valid = (tokens.data.get("valid_tokens") if tokens is not None else None) if cfg.perplexity else 0
    if cfg.max_batches is not None and cfg.perplexity:
        valid = min(valid, cfg.max_batches * cfg.batch_size * cfg.seq_len) if valid is not None else (
            cfg.max_batches * cfg.batch_size * cfg.seq_len)
    items = count_records([str(builtin_path(t)) for t in cfg.tasks] + list(cfg.task_files + cfg.multiple_choice_files))
    requests = _lm_eval_requests(cfg.lm_eval_tasks)
    items = items + requests if items is not None and requests is not None else None
    work = {"perplexity": forward_flops(model, valid or 0.0, cfg.seq_len),
            "tasks": forward_flops(model, (items or 0) * cfg.seq_len, cfg.seq_len),
            "prompts": generation_flops(model, len(cfg.prompts), 0, cfg.max_new_tokens)}
    generated = len(cfg.prompts) * cfg.max_new_tokens
    notes = []
    unknown = [b.name for b in cfg.benchmarks if _benchmark_items(b) is None]
    answers = sum((_benchmark_items(b) or 0) * b.samples for b in cfg.benchmarks)
    new = cfg.generation.max_new_tokens
    generated += answers * new
    if cfg.generator.kind == "transformers" and cfg.generator.model_dir is None:  # the checkpoint evaluated answers
        work["benchmarks"] = generation_flops(model, answers, 0, new)
    elif answers:
        notes.append("benchmark answers come from another generator: their FLOPs are not counted")
    judged = [b for b in cfg.benchmarks if b.judge is not None]
    verdicts = sum((_benchmark_items(b) or 0) * (2 if b.judge.both_orders else 1) for b in judged if b.judge.from_input)
    judge = _judge_model(step, plan) if verdicts else None
    if judge is not None:  # the `judge` input's model reads each answer (pairwise: and the reference) and replies
        work["judge"] = sum(generation_flops(judge, (_benchmark_items(b) or 0) * (2 if b.judge.both_orders else 1),
                                             PROMPT_TOKENS + (2 if b.judge.mode == "pairwise" else 1) * new,
                                             b.judge.max_new_tokens) for b in judged if b.judge.from_input)
    if any(not b.judge.from_input for b in judged):
        notes.append("judge benchmarks' verdicts run on the judge's own model or endpoint: not counted")
    elif verdicts and judge is None:
        notes.append("the judge input's verdicts: not counted (its model has no planned shape)")
    if unknown or items is None:
        notes.append(f"items not counted (not readable here): {', '.join(unknown) or 'an evaluation-set file'}")
    if valid is None:
        notes.append("held-out tokens unknown: perplexity not counted")
    if cfg.throughput_contexts:
        notes.append("throughput measurements not counted")
    flops = sum(work.values())
    data = {"context": ctx, "batch": cfg.batch_size, **({"tokens": valid} if valid is not None else {}),
            "generated": generated}
    measured = ("tokens",) if cfg.perplexity and tokens is not None and "valid_tokens" in tokens.measured else ()
    return plan.cost(step, data=data, flops=flops, memory=mem.terms(), memory_total=mem.total, estimated=True,
                     measured=measured, note="; ".join(notes), **plan.timed(step.name, flops))
