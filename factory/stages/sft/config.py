"""The sft stage's config: the training-stage shell's parts with SFT defaults, and the data knobs."""

from __future__ import annotations

from pydantic import Field

from factory.train.config import Loop, Parallelism, Precision, Sequences, with_defaults


class Config(with_defaults(Loop, steps=200, lr=1e-3, warmup_steps=10, weight_decay=0.0), Precision, Parallelism,
             with_defaults(Sequences, seq_len=256)):
    """Supervised fine-tuning on chats. `seq_len` is the longest conversation trained (one conversation per row):
    longer ones are skipped and counted, never cut. `micro_batch_size` is conversations per pass (per rank under
    torchrun); `steps` repeat the data in fresh seeded orders (epochs)."""

    reasoning_on_fraction: float | None = Field(
        None, ge=0, le=1, description="Share of `detailed thinking on` conversations to train on (the other mode is "
                                      "subsampled to reach it); none keeps the data's own mix.")
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="Share of prompts held out for the validation loss.")
    valid_max: int = Field(64, ge=0, description="Most held-out conversations the validation loss reads.")
    switch_prompts: int = Field(64, ge=0, description="Held-out prompts (heldout.jsonl) on which the reasoning "
                                                      "switch is measured in both modes (0 = skip).")
