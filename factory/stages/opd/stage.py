"""The opd stage: on-policy distillation from one teacher, on the training-stage shell.

Each step the student samples completions to the data's prompts (rl's rollout machinery, `factory.generate.groups`);
the teacher scores every sampled position; the loss is the per-token reverse KL(student || teacher) over the
vocabulary (`factory.train.objectives.opd`). Its own kind rather than a mode of distill: distill trains on a token
corpus (windows of pretraining text, forward KL), this one on prompts and the student's own samples, with other
inputs, another sample source and other knobs; nor a mode of rl, which is a reward-driven policy gradient whose
rollouts, rewards and environments this needs none of.

Inputs: "model" (the student: a checkpoint whose tokenizer carries the chat template, e.g. the sft step's output),
"teacher" (a checkpoint or an imported model with the student's tokenizer: the run refuses another at its start, in one
line), "data" (a conversations artifact: the prompts of `prompts.jsonl`, as rl reads them). Output:

    model/        the distilled student (a plain transformers folder, its tokenizer with the chat template)
    metrics.jsonl one record per optimizer step: loss (the mean per-token reverse KL), lr, grad_norm, tokens, ...
    loss.png      the reverse KL against step
    opd.jsonl     one record per step: reverse_kl, student_logprob and teacher_logprob (mean per sampled token),
                  response_length, truncation_rate; to the tracker as opd/...
    opd.json      summary: reverse KL and teacher log-probability of the first and last quarter of the steps

Resumable: the shell's `checkpoints/` hold the student, optimizer, RNG states and the sample source's state (its
generator and the step's completions), so a run killed at any step resumes with bit-identical losses.

    from factory.stages import opd
    opd.run(opd.Config(steps=20), {"model": sft, "teacher": stronger, "data": conversations}, out, StepContext("opd"))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from factory.artifacts import Checkpoint, Conversations
from factory.chat.template import chat_tokenizer
from factory.errors import InputError
from factory.generate.groups import LocalSampler
from factory.model.checkpoints import load_model
from factory.stage import Artifact, StepContext
from factory.stages.opd.config import Config
from factory.stages.opd.student_samples import StudentSamples
from factory.train.callbacks import StepLog, read_metrics
from factory.train.objectives.opd import OnPolicyDistillationObjective
from factory.train.shell import TrainingShell, write_summary
from factory.train.trainer import StepMetrics, Trainer


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Distil the "teacher" input into the "model" input on the student's own samples of the "data" input's prompts;
    write `model/` and the logs above."""
    output = Path(output)
    model_dir = Checkpoint.of(inputs, "model").model_dir
    teacher_dir = Checkpoint.of(inputs, "teacher").model_dir
    data = Conversations.of(inputs, "data")
    tokenizer = chat_tokenizer(model_dir)
    check_same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True), teacher_dir)
    prompts = data.prompts()
    if not prompts:
        raise InputError(f"{data.path / 'prompts.jsonl'}: no prompts; on-policy distillation samples the student on "
                         "them (run the posttrain_data step)")
    prompts = prompts[: config.max_prompts] if config.max_prompts is not None else prompts
    ctx.log_dataset(name="prompts", uri=inputs["data"].uri, digest=inputs["data"].manifest.get("fingerprint", ""),
                    context="training", profile={"prompts": len(prompts)})

    with TrainingShell(config, output, ctx, plot_title="on-policy distillation: reverse KL") as shell:
        student = shell.prepare(load_model(model_dir).train())
        teacher = load_model(teacher_dir).to(shell.device)
        vocab = (shell.model.config.vocab_size, teacher.config.vocab_size)
        if vocab[0] != vocab[1]:
            raise InputError(f"teacher {teacher_dir}: {vocab[1]} logits per token against the student's {vocab[0]}; "
                             "the reverse KL compares distributions over one vocabulary")
        objective = OnPolicyDistillationObjective(student, teacher)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        source = StudentSamples(prompts, LocalSampler(student, tokenizer), config, pad_id)
        records = output / "opd.jsonl"
        result = shell.fit(shell.trainer(objective, source, tokenizer=tokenizer,
                                         callbacks=[DistillationMetricsCallback(records, ctx, source, objective)]))
    steps = read_metrics(records)
    head, tail = steps[: max(1, len(steps) // 4)], steps[-max(1, len(steps) // 4):]
    summary = {**result.summary, "prompts": float(len(prompts)),
               "reverse_kl_first": _mean(r["reverse_kl"] for r in head), "reverse_kl_last": _mean(r["reverse_kl"] for r in tail),
               "teacher_logprob_first": _mean(r["teacher_logprob"] for r in head),
               "teacher_logprob_last": _mean(r["teacher_logprob"] for r in tail)}
    write_summary(output / "opd.json", summary)
    return summary


def check_same_tokenizer(student: Any, teacher: Any, teacher_dir: Path) -> None:
    """Refuse a teacher whose tokenizer maps any token to another id than the student's (one line naming the first
    difference): the teacher must score the student's very token ids."""
    mine, theirs = student.get_vocab(), teacher.get_vocab()
    if mine == theirs:
        return
    differs = sorted(set(mine.items()) ^ set(theirs.items()), key=lambda kv: kv[1])
    token, _ = differs[0]
    raise InputError(f"teacher {teacher_dir}: its tokenizer is not the student's ({len(theirs)} tokens against "
                     f"{len(mine)}; {token!r} is {theirs.get(token)} there, {mine.get(token)} here); on-policy "
                     "distillation scores the student's token ids, so use a teacher with the student's tokenizer")


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else math.nan


class DistillationMetricsCallback(StepLog):
    """Per step: the loss's figures (mean per sampled token) and the samples' to `opd.jsonl` and the tracker."""

    def __init__(self, path: Path, ctx: StepContext, source: StudentSamples, objective: OnPolicyDistillationObjective) -> None:
        super().__init__(path)
        self.ctx, self.source, self.objective = ctx, source, objective

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        stats = self.objective.pop_stats()
        tokens = max(stats.get("tokens", 0.0), 1.0)
        record: dict[str, Any] = {"step": metrics.step, "reverse_kl": stats.get("kl_sum", 0.0) / tokens,
                                  "student_logprob": stats.get("student_logprob_sum", 0.0) / tokens,
                                  "teacher_logprob": stats.get("teacher_logprob_sum", 0.0) / tokens,
                                  **self.source.stats}
        self.append(record)
        numeric = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
        self.ctx.log_metrics({f"opd/{k}": v for k, v in numeric.items()}, step=metrics.step)
