"""The post-training data stage's `run`: prompts, teacher solutions in both modes, verified ones kept, written."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from transformers import AutoTokenizer

from factory.artifacts import Checkpoint
from factory.chat.records import (
    HELDOUT,
    PROMPTS,
    STATS,
    TRAIN,
    Conversation,
    DataStats,
    Message,
    Prompt,
    split_thinking,
    system_prompt,
    write_records,
    write_stats,
)
from factory.errors import InputError
from factory.generate import Generator
from factory.logs import progress
from factory.stage import Artifact, StepContext
from factory.stages.posttrain_data.budget_control import BudgetCutter
from factory.stages.posttrain_data.config import Config
from factory.stages.posttrain_data.prompt_sets import prompt_sets
from factory.stages.posttrain_data.teachers import (
    Attempt,
    ProceduralTeacher,
    make_teacher,
)
from factory.stages.posttrain_data.verification import Judge
from factory.verify.tool_calls import parse_tool_calls


def _conversation(prompt: Prompt, mode: str, teacher: str, attempt: Attempt, k: int, sample: int) -> Conversation:
    reply, calls = attempt.reply, None
    if prompt.verifier == "tool":
        # the calls go in the message's tool_calls (the chat template writes them); the content keeps the rest
        thinking, final = split_thinking(reply)
        calls, _ = parse_tool_calls(f"<think>{thinking or ''}</think>{final}")
        reply = reply[: reply.rfind("<tool_call>")].rstrip() + "\n" if thinking is not None else ""
    meta = {**prompt.meta, "sample": sample}
    if attempt.tir_rounds:
        meta["tir_rounds"] = attempt.tir_rounds
    return Conversation(
        id=f"{prompt.id}-{mode}-{k}", task=prompt.task, verifier=prompt.verifier, answer=prompt.answer,
        reasoning=mode, teacher=teacher, meta=meta,
        messages=[Message(role="system", content=system_prompt(mode)), Message(role="user", content=attempt.user),
                  Message(role="assistant", content=reply, tool_calls=calls)])


def _digest(prompts: list[Prompt]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.model_dump_json().encode())
    return "sha256:" + h.hexdigest()


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext,
        generator: Generator | None = None) -> dict[str, float]:
    """Build the prompt sets, have the teacher solve each training prompt in every reasoning mode (`samples`
    candidates each), keep what the verifiers accept, and write train.jsonl, prompts.jsonl, heldout.jsonl and
    stats.json. A set left with fewer than `min_kept_per_set` verified solutions fails the step, naming it,
    before anything is written.

    `generator` is a runtime handle for callers that already hold one (tests, notebooks); it replaces the
    generator `config.teacher` describes.
    """
    cutter = None
    if config.budget_control is not None:  # read first: a missing tokenizer fails before the teacher works
        # budgets are counted in the tokens of the model this data trains, as its generator counts a thinking budget
        tokenizer = AutoTokenizer.from_pretrained(Checkpoint.of(inputs, "model").model_dir, local_files_only=True)
        cutter = BudgetCutter(config.budget_control, tokenizer)
    sets = prompt_sets(config)
    for s in sets:
        ctx.log_dataset(name=f"prompts/{s.name}", uri=s.source, digest=_digest(s.train + s.heldout),
                        context="posttrain prompts", profile={"train": len(s.train), "heldout": len(s.heldout)})
    train_prompts = [p for s in sets for p in s.train]
    set_of = {p.id: s.name for s in sets for p in s.train}
    counts: Counter = Counter()
    dropped: Counter = Counter()
    teacher, opened = make_teacher(config, inputs, counts, generator)
    ctx.log.info("posttrain_data_start", sets=[s.name for s in sets], prompts=len(train_prompts), teacher=teacher.name,
                 modes=list(config.reasoning), samples=config.samples)
    samples = 1 if isinstance(teacher, ProceduralTeacher) else config.samples  # its traces are deterministic
    kept: list[Conversation] = []
    kept_per: Counter = Counter()  # (prompt id, mode) -> solutions kept
    seen: set[tuple[str, str, str]] = set()  # (prompt id, mode, reply): a repeated sample is not kept twice
    by_set: Counter = Counter()
    generated = 0
    try:
        with Judge(workers=config.verify_workers, timeout_s=config.verify_timeout_s, sandbox=config.code_sandbox) as judge:
            # rounds of (mode, sample, a chunk of prompts): each chunk is solved, then judged, with progress
            chunks = [train_prompts[i:i + config.request_batch] for i in range(0, len(train_prompts), config.request_batch)]
            rounds = [(mode, sample, chunk) for mode in config.reasoning for sample in range(samples) for chunk in chunks]
            for mode, sample, chunk in progress(rounds, total=len(rounds), desc="posttrain_data"):
                attempts = teacher.solve(chunk, mode, sample)
                generated += len(attempts)
                solved = [(p, a) for p, a in zip(chunk, attempts) if isinstance(a, Attempt)]
                dropped.update(a for a in attempts if isinstance(a, str))
                reasons = judge.check([(p, mode, a.reply) for p, a in solved])
                for (prompt, attempt), reason in zip(solved, reasons):
                    key = (prompt.id, mode)
                    if reason:
                        dropped[reason] += 1
                    elif (prompt.id, mode, attempt.reply) in seen:
                        dropped["duplicate"] += 1
                    elif kept_per[key] >= config.keep_per_prompt:
                        dropped["over_keep_per_prompt"] += 1
                    else:
                        kept.append(_conversation(prompt, mode, teacher.name, attempt, kept_per[key], sample))
                        seen.add((prompt.id, mode, attempt.reply))
                        kept_per[key] += 1
                        by_set[set_of[prompt.id]] += 1
    finally:
        if opened is not None and hasattr(opened, "close"):
            opened.close()

    # a set whose every prompt was also held out has nothing to train on: it fails like a set left unverified
    short = [s for s in sets if s.trains and by_set[s.name] < config.min_kept_per_set]
    if short:
        why = ", ".join(f"{k} {v}" for k, v in dropped.most_common()) or "nothing generated"
        raise InputError(
            "; ".join(f"prompt set {s.name!r} ({s.source}): {by_set[s.name]} verified solutions of {len(s.train)} "
                      f"prompts x {len(config.reasoning)} modes"
                      + (f" ({s.overlap} prompts removed as held-out duplicates)" if s.overlap else "") for s in short)
            + f", fewer than min_kept_per_set {config.min_kept_per_set} (teacher {teacher.name}; dropped: {why}); "
              "nothing was published: use a stronger teacher, more samples, or drop the set")

    budget_counts: Counter = Counter()
    copies: list[Conversation] = []
    if cutter is not None:
        copies, budget_counts = cutter.cut(kept)
        ctx.log.info("posttrain_data_budget_control", **dict(budget_counts))

    heldout = [p for s in sets for p in s.heldout]
    stats = DataStats(
        prompts=len(train_prompts), heldout=len(heldout), generated=generated, kept=len(kept),
        dropped=dict(sorted(dropped.items())), kept_by_teacher={teacher.name: len(kept)},
        kept_by_task=dict(sorted(Counter(c.task for c in kept).items())),
        kept_by_reasoning=dict(sorted(Counter(c.reasoning for c in kept).items())), teachers=[teacher.name],
        sets={s.name: {"source": s.source, "prompts": len(s.train), "heldout": len(s.heldout), "kept": by_set[s.name],
                       "overlap_removed": s.overlap} for s in sets},
        tir=dict(sorted(counts.items())), budget_control=dict(sorted(budget_counts.items())))
    write_records(output / PROMPTS, train_prompts)
    write_records(output / HELDOUT, heldout)
    write_records(output / TRAIN, kept + copies)
    write_stats(output / STATS, stats)
    ctx.log_artifact(output / STATS)

    metrics = {"prompts": stats.prompts, "heldout": stats.heldout, "generated": stats.generated, "kept": stats.kept,
               "kept_fraction": stats.kept / max(1, stats.generated),
               **{f"dropped_{k}": v for k, v in stats.dropped.items()},
               **{f"kept_{k}": v for k, v in stats.kept_by_reasoning.items()}, **{k: v for k, v in counts.items()},
               **{f"budget_control_{k}": v for k, v in stats.budget_control.items()},
               # the teacher's name in the metric's key, so the lineage (and the release's model card) names it
               **{f"kept_by_teacher.{k}": v for k, v in stats.kept_by_teacher.items()}}
    metrics = {k: float(v) for k, v in metrics.items()}
    ctx.log.info("posttrain_data_done", teacher=teacher.name, **{k: v for k, v in metrics.items()})
    return metrics
