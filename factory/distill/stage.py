"""The distill stage: train a student on a teacher's logits (forward KL with temperature, optional LM loss).

Inputs: "student" and "teacher" (artifacts holding `model/`, e.g. compress's output and the pretrain
checkpoint it was pruned from) and "tokens" (a tokens artifact: `train_split` windows train, the
`valid_split` windows measure the validation loss before and after). Output:

    model/          the distilled student (a plain transformers folder, tokenizer files copied from the student)
    metrics.jsonl   one record per step (loss = the distillation loss per label token)
    distill.json    validation LM loss of the student before and after, and of the teacher

Runs on the factory's trainer (`factory.train.Trainer`) with `DistillationObjective`; resumable: while it
runs, `checkpoints/step-NNNNNN/` hold model, optimizer, data position and RNG states, and a restarted
attempt continues from the latest one. They are removed once `model/` is written.

    from factory.distill import stage
    stage.run(stage.Config(steps=100), {"student": pruned, "teacher": ckpt, "tokens": toks}, out, StepContext("distill"))
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from factory.stage import Artifact, StepContext
from factory.train.config import TrainConfig

__all__ = ["Config", "KIND", "run"]

KIND = "checkpoint"  # resumable: a flag of its entry in factory.kinds.KINDS


class Config(TrainConfig):
    """Logit distillation: the training-loop fields of `TrainConfig` plus the loss's knobs."""

    temperature: float = Field(1.0, gt=0, description="Softmax temperature of teacher and student in the KL term.")
    kl_weight: float = Field(1.0, ge=0, description="Weight of the T^2-scaled forward KL(teacher || student).")
    lm_weight: float = Field(0.0, ge=0, description="Weight of the student's own next-token cross entropy.")
    train_split: str = Field("train", description="Prefix of the tokens input's indexed dataset to train on.")
    valid_split: str = Field("valid", description="Prefix of the tokens input's indexed dataset for validation loss.")
    valid_samples: int = Field(32, gt=0, description="Validation windows (at most).")


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Distil the "teacher" input into the "student" input; write `model/`, `metrics.jsonl`, `distill.json`."""
    import torch

    from factory.artifacts import Checkpoint, Tokens
    from factory.model.checkpoints import lm_loss, load_model, save_model
    from factory.train.distill import DistillationObjective
    from factory.errors import InputError
    from factory.train.callbacks import MetricsCallback, read_metrics
    from factory.train.checkpoint import CheckpointCallback
    from factory.train.trainer import Trainer

    output = Path(output)
    student_dir, teacher_dir = Checkpoint.of(inputs, "student").model_dir, Checkpoint.of(inputs, "teacher").model_dir
    tokens = Tokens.of(inputs, "tokens")
    train = tokens.windows(config.train_split, config.seq_len)
    if train.shape[0] == 0:
        raise InputError(f"tokens/{config.train_split}: fewer tokens than one window of seq_len + 1 = {config.seq_len + 1}; lower seq_len or add data")
    valid = tokens.windows(config.valid_split, config.seq_len, config.valid_samples)
    if valid.shape[0] == 0:
        valid = train[: config.valid_samples]
    torch.manual_seed(config.seed)
    student, teacher = load_model(student_dir), load_model(teacher_dir)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise InputError(f"student vocab_size {student.config.vocab_size} != teacher vocab_size {teacher.config.vocab_size}: "
                         "distillation needs one tokenizer")
    before = lm_loss(student, valid)
    teacher_loss = lm_loss(teacher, valid)
    objective = DistillationObjective(student, teacher, config.temperature, config.kl_weight, config.lm_weight)
    metrics_path = output / "metrics.jsonl"
    callbacks = [CheckpointCallback(output / "checkpoints", config.checkpoint_interval, config.keep_checkpoints),
                 MetricsCallback(metrics_path, ctx, config.log_interval)]
    state = Trainer(objective, list(train), config, callbacks=callbacks).fit()
    student.eval()
    after = lm_loss(student, valid)
    save_model(student, output / "model", tokenizer_from=student_dir)
    shutil.rmtree(output / "checkpoints", ignore_errors=True)
    losses = [r["loss"] for r in read_metrics(metrics_path) if r["loss"] is not None]
    result = {"valid_loss_before": before, "valid_loss_after": after, "teacher_valid_loss": teacher_loss,
              "final_distill_loss": losses[-1] if losses else float("nan"), "steps": float(state.step),
              "tokens_seen": float(state.tokens_seen)}
    (output / "distill.json").write_text(json.dumps(result, indent=2))
    ctx.log_metrics(result)
    return result
