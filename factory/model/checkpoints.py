"""Reading and writing what the compress, distill and quantize stages share: model folders and token windows.

A model input is an artifact holding `model/` (a transformers `NemotronHForCausalLM` folder); token windows
come from a tokens artifact's `PREFIX.bin/.idx` (Megatron indexed dataset) cut into seq_len + 1 windows.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import InputError
from factory.stage import Artifact


def model_folder(inputs: Mapping[str, Artifact], name: str) -> Path:
    """The `model/` folder of input `name`; `InputError` naming what is missing."""
    if name not in inputs:
        raise InputError(f"needs an input named {name!r} (an artifact with model/); got inputs {sorted(inputs)}")
    folder = Path(inputs[name].path) / "model"
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder / 'config.json'}: missing; input {name!r} must hold a transformers model folder model/")
    return folder


def load_model(folder: Path) -> torch.nn.Module:
    """A NemotronHForCausalLM from `folder`, in fp32 and eval mode."""
    from transformers import NemotronHForCausalLM

    return NemotronHForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def read_windows(inputs: Mapping[str, Artifact], input_name: str, split: str, seq_len: int, limit: int | None = None) -> torch.Tensor:
    """Token windows (N, seq_len + 1) int64 of `split`.bin/.idx in input `input_name` (the first `limit`)."""
    from factory.tokens import PackedSequences

    if input_name not in inputs:
        raise InputError(f"needs an input named {input_name!r} (a tokens artifact); got inputs {sorted(inputs)}")
    prefix = Path(inputs[input_name].path) / split
    for suffix in (".bin", ".idx"):
        if not prefix.with_name(split + suffix).is_file():
            raise InputError(f"{prefix.with_name(split + suffix)}: missing from input {input_name!r} (expected {split}.bin and {split}.idx)")
    data = PackedSequences(prefix, seq_len)
    n = len(data) if limit is None else min(len(data), limit)
    if n == 0:
        return torch.zeros((0, seq_len + 1), dtype=torch.int64)
    return torch.stack([data[i] for i in range(n)]).long()


def save_model(model: torch.nn.Module, folder: Path, tokenizer_from: Path | None = None) -> None:
    """`save_pretrained` into a hidden temporary folder, then rename it to `folder`: a folder named
    `model/` is always whole. Copies the tokenizer files of `tokenizer_from` when given."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if tokenizer_from is not None:
        for f in Path(tokenizer_from).iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja")):
                shutil.copy2(f, tmp / f.name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def check_calibration(windows: torch.Tensor, min_samples: int, where: str) -> None:
    """Raise `InputError` unless `windows` is (N, T+1) int token windows with N >= min_samples and T >= 1."""
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise InputError(f"{where}: calibration windows must be (samples, seq_len + 1) with seq_len >= 1, got shape {tuple(windows.shape)}")
    if windows.shape[0] < min_samples:
        raise InputError(
            f"{where}: {windows.shape[0]} calibration windows, fewer than calibration_samples = {min_samples}; "
            "add calibration data or lower calibration_samples"
        )


def lm_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross entropy of `model` over token windows (N, T+1)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size]
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits.float()
            total += float(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"))
            count += batch[:, 1:].numel()
    return total / max(count, 1)
