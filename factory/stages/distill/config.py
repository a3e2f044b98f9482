"""The distill stage's config: the training-stage shell's parts and the distillation loss's knobs."""

from __future__ import annotations

from pydantic import Field

from factory.train.config import Loop, Parallelism, Precision, Sequences


class Config(Loop, Precision, Parallelism, Sequences):
    """Logit distillation on the training-stage shell's parts, plus the loss's knobs and the token splits."""

    temperature: float = Field(1.0, gt=0, description="Softmax temperature of teacher and student in the KL term.")
    kl_weight: float = Field(1.0, ge=0, description="Weight of the T^2-scaled forward KL(teacher || student).")
    lm_weight: float = Field(0.0, ge=0, description="Weight of the student's own next-token cross entropy.")
    train_split: str = Field("train", description="Prefix of the tokens input's indexed dataset to train on.")
    valid_split: str = Field("valid", description="Prefix of the tokens input's indexed dataset for validation loss.")
    valid_samples: int = Field(32, gt=0, description="Validation windows (at most).")
