"""The distill stage: train a student on a teacher's logits (forward KL with temperature, optional LM loss).

Inputs: "student" and "teacher" (artifacts holding `model/`, e.g. compress's output and the pretrain
checkpoint it was pruned from) and "tokens" (a tokens artifact: `train_split` windows train, the
`valid_split` windows measure the validation loss before and after). Output:

    model/          the distilled student (a plain transformers folder, the student's tokenizer)
    metrics.jsonl   one record per step (loss = the distillation loss per label token); loss.png
    distill.json    validation LM loss of the student before and after, and of the teacher

Runs through the training-stage shell (`factory.train.shell`) with `DistillationObjective`: the precision converters
on the student (the frozen teacher runs under the same autocast), DDP / FSDP2 under torchrun; resumable: while it
runs, `checkpoints/step-NNNNNN/` hold model, optimizer, data position and RNG states, and a restarted
attempt continues from the latest one. They are removed once `model/` is written.

    from factory.stages.distill import stage
    stage.run(stage.Config(steps=100), {"student": pruned, "teacher": ckpt, "tokens": toks}, out, StepContext("distill"))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from transformers import AutoTokenizer

from factory.artifacts import Checkpoint, Tokens
from factory.errors import InputError
from factory.model.checkpoints import lm_loss, load_model
from factory.stage import Artifact, StepContext
from factory.stages.distill.config import Config
from factory.train.objectives.logit_distill import DistillationObjective
from factory.train.shell import TrainingShell, write_summary


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Distil the "teacher" input into the "student" input; write `model/`, `metrics.jsonl`, `distill.json`."""
    output = Path(output)
    student_dir, teacher_dir = Checkpoint.of(inputs, "student").model_dir, Checkpoint.of(inputs, "teacher").model_dir
    tokens = Tokens.of(inputs, "tokens")
    train = tokens.windows(config.train_split, config.seq_len)
    if train.shape[0] == 0:
        raise InputError(f"tokens/{config.train_split}: fewer tokens than one window of seq_len + 1 = {config.seq_len + 1}; "
                         "lower seq_len or add data")
    valid = tokens.windows(config.valid_split, config.seq_len, config.valid_samples)
    if valid.shape[0] == 0:
        valid = train[: config.valid_samples]
    has_tokenizer = (student_dir / "tokenizer.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(student_dir, local_files_only=True) if has_tokenizer else None
    with TrainingShell(config, output, ctx, plot_title="distillation loss") as shell:
        student, teacher = load_model(student_dir), load_model(teacher_dir)
        if student.config.vocab_size != teacher.config.vocab_size:
            raise InputError(f"student vocab_size {student.config.vocab_size} != teacher vocab_size "
                             f"{teacher.config.vocab_size}: distillation needs one tokenizer")
        before, teacher_loss = lm_loss(student, valid), lm_loss(teacher, valid)
        objective = DistillationObjective(shell.prepare(student), teacher.to(shell.device), config.temperature, config.kl_weight,
                                          config.lm_weight)
        result = shell.fit(shell.trainer(objective, list(train), tokenizer=tokenizer))
        student.eval()
        after = lm_loss(student, valid.to(shell.device))
    if shell.rank != 0:
        return result.summary
    summary = {**result.summary, "valid_loss_before": before, "valid_loss_after": after, "teacher_valid_loss": teacher_loss}
    write_summary(output / "distill.json", summary)
    return summary
