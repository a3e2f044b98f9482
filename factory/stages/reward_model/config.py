"""The reward_model stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from pydantic import Field

from factory.train.config import Loop, Parallelism, Precision, Sequences, with_defaults


class Config(with_defaults(Loop, steps=100, lr=1e-4, warmup_steps=5, weight_decay=0.0, checkpoint_interval=50),
             Precision, Parallelism, with_defaults(Sequences, seq_len=512)):
    """Reward-model regression on the training-stage shell's parts: the scored data and the attributes. `seq_len` is
    the most tokens of prompt + response (longer records are skipped and counted); `micro_batch_size` is records per
    pass (per rank under torchrun)."""

    data: str = Field(description="JSONL of scored responses (prompt, response and one number per attribute).",
                      json_schema_extra={"external_input": True})
    attributes: list[str] = Field(
        default_factory=lambda: ["helpfulness", "correctness", "coherence", "complexity", "verbosity"], min_length=1,
        description="The attributes the head predicts, in order (each a field of every data record).")
    valid_fraction: float = Field(0.2, ge=0, lt=1, description="Share of records held out for validation (every k-th).")
