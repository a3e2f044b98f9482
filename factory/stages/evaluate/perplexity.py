"""Held-out perplexity and bits per byte on the tokens artifact's valid split.

    nll_sum, tokens, windows, per_window = heldout_nll(model, tokens_dir / "valid", config, device, ctx)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from factory.errors import InputError
from factory.logs import progress
from factory.stage import StepContext
from factory.stages.evaluate.config import Config
from factory.tokens import PackedSequences


def heldout_nll(
    model: torch.nn.Module, prefix: Path, config: Config, device: torch.device, ctx: StepContext
) -> tuple[float, int, int, list[float]]:
    """Summed next-token NLL (nats) over full `seq_len + 1` windows of the split at `prefix`.

    Returns (nll_sum, predicted_tokens, windows, nll per window). Every window predicts its last seq_len
    tokens from the tokens before them, so predicted_tokens = windows * seq_len; the per-window sums give
    the standard error.
    """
    if not Path(f"{prefix}.idx").is_file() or not Path(f"{prefix}.bin").is_file():
        raise InputError(f"{prefix}.bin/.idx: the tokens artifact has no valid split")
    windows = PackedSequences(str(prefix), config.seq_len)
    n = len(windows)
    if config.max_batches is not None:
        n = min(n, config.max_batches * config.batch_size)
    if n == 0:
        raise InputError(
            f"{prefix}.bin: the valid split holds fewer than seq_len + 1 = {config.seq_len + 1} tokens; "
            "lower evaluate.seq_len or give tokenize a larger valid fraction"
        )
    starts = range(0, n, config.batch_size)
    loss_sum, n_tokens = 0.0, 0
    per_window: list[float] = []
    for b, start in enumerate(progress(starts, total=len(starts), desc="evaluate")):
        batch = torch.stack([windows[i] for i in range(start, min(start + config.batch_size, n))]).to(device)  # (B, T+1)
        with torch.no_grad():
            logits = model(input_ids=batch[:, :-1]).logits.float()  # (B, T, V)
        targets = batch[:, 1:]  # (B, T)
        per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B*T,)
        rows = per_token.view(targets.shape).sum(dim=1)  # (B,)
        per_window += rows.tolist()
        loss_sum += rows.sum().item()
        n_tokens += targets.numel()
        if (b + 1) % config.log_every == 0:
            ctx.log.info("evaluate", batch=b + 1, running_loss=round(loss_sum / n_tokens, 4))
    return loss_sum, n_tokens, n, per_window


def bytes_per_token(stats_path: Path) -> float | None:
    """UTF-8 bytes per token of the valid split, from the tokens artifact's stats.json, if it says.

    Accepted shapes: {"valid": {"bytes_per_token": x}}, {"valid": {"bytes": b, "tokens": t}},
    {"bytes_per_token": x}. Anything else: None (bits per byte is then not reported).
    """
    if not stats_path.is_file():
        return None
    try:
        stats = json.loads(stats_path.read_text())
    except json.JSONDecodeError:
        return None
    for scope in (stats.get("valid"), stats):
        if not isinstance(scope, dict):
            continue
        if isinstance(scope.get("bytes_per_token"), (int, float)) and scope["bytes_per_token"] > 0:
            return float(scope["bytes_per_token"])
        b, t = scope.get("bytes"), scope.get("tokens")
        if isinstance(b, (int, float)) and isinstance(t, (int, float)) and t > 0 and b > 0:
            return b / t
    return None


