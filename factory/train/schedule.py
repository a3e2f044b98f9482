"""Warmup-stable-decay (WSD) learning-rate schedule, as a pure function of the step."""

from __future__ import annotations


def wsd_lr(step: int, *, peak_lr: float, total_steps: int, warmup_steps: int, decay_fraction: float, min_lr_ratio: float) -> float:
    """Learning rate for the update at 0-based `step` of `total_steps`.

    Warmup: linear from peak/warmup up to peak over `warmup_steps` updates (`(step + 1) / warmup_steps`,
    so the first update is never taken at lr 0). Stable: peak. Decay: the last
    `round(decay_fraction * total_steps)` updates fall linearly to `min_lr_ratio * peak`, reached
    exactly at the final update (Nemotron-H / MiniCPM-style WSD; a later run can branch off the
    stable phase and decay on different data).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    min_lr = peak_lr * min_lr_ratio
    decay_steps = round(decay_fraction * total_steps)
    decay_start = total_steps - decay_steps
    if step < warmup_steps and step < decay_start:
        return peak_lr * (step + 1) / warmup_steps
    if step < decay_start:
        return peak_lr
    progress = min((step - decay_start + 1) / decay_steps, 1.0)
    return peak_lr - (peak_lr - min_lr) * progress
