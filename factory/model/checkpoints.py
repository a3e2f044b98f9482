"""What the compress, distill and quantize stages share: loading and saving a model folder, checking a
calibration set, and the LM loss over token windows. (Reading the artifacts themselves is `factory.artifacts`:
`Checkpoint.of(inputs, "model").model_dir`, `Tokens.of(inputs, "tokens").windows(split, seq_len)`.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM

from factory.errors import InputError


def load_model(folder: Path) -> torch.nn.Module:
    """The causal LM saved in `folder` (whatever architecture `AutoModelForCausalLM` loads: the factory's NemotronH,
    an imported Llama, Qwen, Mistral, ...), in fp32 and eval mode. Never code from the folder itself."""
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False).eval()


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
