"""Decode throughput and inference memory against context (Nemotron-H's headline claim), for one model.

    rate, cache_bytes = decode_at_context(model, context=8192, batch=1, steps=8)

Decode cost per token depends on the context only through the cache, so the cache is filled to the context
length directly: a short real prefill builds it, then every attention layer's keys and values (B, H_kv, T, D)
are replaced by random ones of length `context`; Mamba layers keep their fixed-size conv and SSM states.
Memory is the bytes of every tensor the cache holds. `bench/throughput.py` compares the hybrid with a
transformer of matched size; the evaluate stage reports the checkpoint's own curve and plots it, and with
`throughput_baseline` the curve of `matched_transformer(model)` beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from matplotlib.figure import Figure
from transformers import AutoModelForCausalLM


def cache_bytes(cache) -> int:
    """Bytes of every tensor the cache holds (KV tensors, Mamba conv and SSM states), each counted once."""
    total, seen = 0, set()

    def visit(value) -> None:
        nonlocal total
        if torch.is_tensor(value):
            if value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    for layer in cache.layers:
        visit(vars(layer))
    return total


@torch.no_grad()
def decode_at_context(model: torch.nn.Module, context: int, batch: int, steps: int) -> tuple[float, int]:
    """(decode tokens/s, cache bytes) with `context` tokens in the cache for `batch` sequences."""
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    out = model(input_ids=torch.randint(0, vocab, (batch, 16), device=device), use_cache=True)
    cache = out.past_key_values
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if torch.is_tensor(keys):  # an attention layer: (B, H_kv, T, D) grown to the context length
            b, h, _, d = keys.shape
            layer.keys = torch.randn(b, h, context, d, device=device, dtype=keys.dtype) * keys.std()
            layer.values = torch.randn(b, h, context, d, device=device, dtype=keys.dtype) * layer.values.std()
    token = out.logits[:, -1:].argmax(-1)  # (B, 1)
    timings = []
    for step in range(steps + 1):
        started = time.perf_counter()
        out = model(input_ids=token, past_key_values=cache, use_cache=True,
                    cache_position=torch.tensor([context + step], device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
    # the first step warms up; the cache now holds context + steps + 1 tokens in each attention layer
    return batch * steps / sum(timings[1:]), cache_bytes(cache)


def matched_transformer(model: torch.nn.Module) -> torch.nn.Module:
    """A transformer of the same width and depth as hybrid `model`: every Mamba mixer layer becomes an attention
    layer (MLP and MoE layers stay), with random weights, since decode speed and cache size do not depend on
    them. Nemotron-H compares its hybrids with exactly this model."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.layers_block_type = ["full_attention" if t == "linear_attention" else t for t in model.config.layers_block_type]
    param = next(model.parameters())
    return AutoModelForCausalLM.from_config(config).to(device=param.device, dtype=param.dtype).eval()


def table(curves: dict[str, dict[int, tuple[float, int]]]) -> str:
    """A markdown table: one row per context, decode tokens/s and cache MiB of each model."""
    names = list(curves)
    contexts = sorted(next(iter(curves.values())))
    head = "| context | " + " | ".join(f"{n} tokens/s" for n in names) + " | " + " | ".join(f"{n} cache MiB" for n in names) + " |"
    rows = [f"| {c} | " + " | ".join(f"{curves[n][c][0]:.1f}" for n in names) + " | "
            + " | ".join(f"{curves[n][c][1] / 2**20:.3f}" for n in names) + " |" for c in contexts]
    return "\n".join([head, "|" + "---|" * (1 + 2 * len(names)), *rows]) + "\n"


def plot(curve: dict[int, tuple[float, int]] | dict[str, dict[int, tuple[float, int]]], path: Path) -> None:
    """Tokens/s and cache MiB against context, one PNG; one line per model when given {name: curve}."""
    curves = curve if all(isinstance(v, dict) for v in curve.values()) else {"model": curve}
    fig = Figure(figsize=(9, 3.5))  # no pyplot: no global figure state, no display
    left, right = fig.subplots(1, 2)
    for name, points in curves.items():
        contexts = sorted(points)
        left.plot(contexts, [points[c][0] for c in contexts], marker="o", label=name)
        right.plot(contexts, [points[c][1] / 2**20 for c in contexts], marker="o", label=name)
    left.set(xscale="log", xlabel="context (tokens)", ylabel="decode tokens/s")
    right.set(xscale="log", xlabel="context (tokens)", ylabel="cache MiB (KV + Mamba state)")
    if len(curves) > 1:
        left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
