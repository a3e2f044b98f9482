"""Decode throughput and inference memory against context (Nemotron-H's headline claim), for one model.

    record = measure(model, contexts=[1024, 8192], batches=[1, 8], baseline=True)
    (output / "throughput.md").write_text(table(record)); plot(record, output / "throughput.png")
    metrics = throughput_metrics(record, batch=8)   # from factory.generate.decode_speed

`measure` times, at each context and batch, the factory's decoder (`factory.generate.decode_speed`, what every
generating stage runs on NemotronH) and transformers' cached forward (`decode_at_context` below, the step
`generate` takes); with `baseline`, the same for `matched_transformer(model)`, a transformer of equal parameters;
and greedy generation of a few prompts by transformers' `generate` against the factory's `decode`, tokens
compared. The record names the machine that measured it (`factory.generate.decode_speed.machine`): a speed
without its machine means nothing, and the release card quotes none without it. `bench/throughput.py` is the same
comparison at the sizes and contexts of the issue, with the bandwidth bound.

    rate, cache_bytes = decode_at_context(model, context=8192, batch=1, steps=8)

Decode cost per token depends on the context only through the cache, so the cache is filled to the context
length directly: a short real prefill builds it, then every attention layer's keys and values (B, H_kv, T, D)
are replaced by random ones of length `context`; Mamba layers keep their fixed-size conv and SSM states.
Memory is the bytes of every tensor the cache holds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from transformers import AutoModelForCausalLM

from factory.generate import decode_speed
from factory.generate.decode import decode, supports_fast_decode
from factory.generate.decode_speed import pairs, rate


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
    """A transformer of the hybrid `model`'s parameter count, as Nemotron-H compares: every Mamba mixer layer becomes
    an attention layer (same width, depth and heads; MLP and MoE layers stay), then the MLP layers' width is changed
    until the parameter counts match (to within one unit of width). Random weights: decode speed and cache size do
    not depend on them. Without MLP layers the widths stay (the count then differs; `parameters` says by how much)."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.layers_block_type = ["full_attention" if t == "linear_attention" else t for t in model.config.layers_block_type]
    mlps = config.layers_block_type.count("mlp")
    if mlps:
        with torch.device("meta"):  # counted without allocating
            unmatched = _parameters(AutoModelForCausalLM.from_config(config))
        per_unit = mlps * 2 * config.hidden_size  # up and down projections gain hidden_size each per unit of width
        config.intermediate_size = max(1, config.intermediate_size + round((_parameters(model) - unmatched) / per_unit))
    param = next(model.parameters())
    return AutoModelForCausalLM.from_config(config).to(device=param.device, dtype=param.dtype).eval()


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def generate_against_decode(model: torch.nn.Module, prompts: int, prompt_tokens: int, new_tokens: int,
                            seed: int = 0) -> dict[str, Any]:
    """Greedy generation of `prompts` random prompts of `prompt_tokens` tokens, `new_tokens` each, as one batch: by
    transformers' `generate` and by the factory's `decode` (as many slots), each after an untimed warm-up; tokens/s
    of both and whether their tokens agree."""
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (prompts, prompt_tokens), generator=torch.Generator().manual_seed(seed))

    def run_generate(n: int) -> list[list[int]]:
        return model.generate(ids.to(device), attention_mask=torch.ones_like(ids, device=device), max_new_tokens=n,
                              min_new_tokens=n, do_sample=False, pad_token_id=0)[:, prompt_tokens:].tolist()

    run_generate(2)
    started = time.perf_counter()
    expected = run_generate(new_tokens)
    generate_s = time.perf_counter() - started
    decode(model, ids[:, :4].tolist(), 2, slots=prompts)
    started = time.perf_counter()
    got = decode(model, ids.tolist(), new_tokens, slots=prompts)
    decode_s = time.perf_counter() - started
    return {"prompts": prompts, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "generate_tokens_per_s": prompts * new_tokens / generate_s,
            "decoder_tokens_per_s": prompts * new_tokens / decode_s, "same_tokens": got == expected}


def measure(model: torch.nn.Module, contexts: Sequence[int], batches: Sequence[int], baseline: bool,
            steps: int = 4, new_tokens: int = 16) -> dict[str, Any]:
    """The throughput record of `model`: {"machine", "parameters": {name: count}, "cells": one per model, context and
    batch ({"model", "context", "batch", "decoder_tokens_per_s" (None where the decoder does not take the model),
    "forward_tokens_per_s", "state_bytes"}), "generation": `generate_against_decode` (None without the decoder)}.
    State bytes are the decoder's when it runs (what a generating stage holds), else transformers' cache."""
    models = {"this model": model}
    if baseline:
        models["transformer"] = matched_transformer(model)
    cells = []
    for context in contexts:
        for batch in batches:
            for name, m in models.items():
                forward, state = decode_at_context(m, context, batch, steps)
                fast = None
                if supports_fast_decode(m):
                    fast, state = decode_speed.decode_at_context(m, context, batch, steps)
                cells.append({"model": name, "context": context, "batch": batch, "decoder_tokens_per_s": fast,
                              "forward_tokens_per_s": forward, "state_bytes": state})
    generation = (generate_against_decode(model, prompts=max(batches), prompt_tokens=16, new_tokens=new_tokens)
                  if supports_fast_decode(model) else None)
    return {"machine": decode_speed.machine(next(model.parameters()).device),
            "parameters": {name: _parameters(m) for name, m in models.items()}, "cells": cells, "generation": generation}


def _speed(cell: Mapping[str, Any]) -> str:
    fast = cell["decoder_tokens_per_s"]
    return f"{cell['forward_tokens_per_s']:.1f}" if fast is None else f"{fast:.1f} ({cell['forward_tokens_per_s']:.1f})"


def table(record: Mapping[str, Any]) -> str:
    """Markdown: the machine; per context and batch, tokens/s of the decoder (transformers' cached forward in brackets)
    and cache MiB of this model and, when measured, the equal-parameter transformer with the ratio; then generation."""
    baseline = "transformer" in record["parameters"]
    params = record["parameters"]
    lines = [f"Measured on {decode_speed.machine_line(record['machine'])}.", "",
             f"this model: {params['this model'] / 1e6:.2f}M parameters"
             + (f"; transformer (attention in every Mamba layer's place, MLP width matched to equal parameters): "
                f"{params['transformer'] / 1e6:.2f}M parameters" if baseline else ""),
             "", "Decode tokens/s at context: the factory's decoder (transformers' cached forward in brackets).", ""]
    head = ["context", "batch", "this model tokens/s", "this model cache MiB"]
    if baseline:
        head[3:3] = ["transformer tokens/s", "this model / transformer"]
        head.append("transformer cache MiB")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mine, theirs in pairs(record):
        row = [str(mine["context"]), str(mine["batch"]), _speed(mine), f"{mine['state_bytes'] / 2**20:.3f}"]
        if baseline:
            row[3:3] = [_speed(theirs), f"{rate(mine) / rate(theirs):.2f}x"]
            row.append(f"{theirs['state_bytes'] / 2**20:.3f}")
        lines.append("| " + " | ".join(row) + " |")
    gen = record.get("generation")
    if gen:
        lines += ["", (f"Greedy generation, {gen['prompts']} prompts x {gen['prompt_tokens']} tokens, "
                       f"{gen['new_tokens']} new tokens each, as one batch:"), "",
                  "| generate tokens/s | decoder tokens/s | decoder / generate | same tokens |", "|---|---|---|---|",
                  (f"| {gen['generate_tokens_per_s']:.1f} | {gen['decoder_tokens_per_s']:.1f} | "
                   f"{gen['decoder_tokens_per_s'] / gen['generate_tokens_per_s']:.2f}x | "
                   f"{'yes' if gen['same_tokens'] else 'NO'} |")]
    return "\n".join(lines) + "\n"


def plot(record: Mapping[str, Any], path: Path) -> None:
    """Decode tokens/s (one line per model and batch; the decoder solid, transformers' forward dashed) and cache MiB
    (per model, at the smallest batch) against context, one PNG."""
    fig = Figure(figsize=(9, 3.5))  # no pyplot: no global figure state, no display
    left, right = fig.subplots(1, 2)
    smallest = min(c["batch"] for c in record["cells"])
    for name in record["parameters"]:
        for batch in sorted({c["batch"] for c in record["cells"]}):
            cells = sorted((c for c in record["cells"] if c["model"] == name and c["batch"] == batch), key=lambda c: c["context"])
            contexts = [c["context"] for c in cells]
            if cells[0]["decoder_tokens_per_s"] is not None:
                left.plot(contexts, [c["decoder_tokens_per_s"] for c in cells], marker="o", label=f"{name}, batch {batch}")
            left.plot(contexts, [c["forward_tokens_per_s"] for c in cells], marker="x", linestyle="--",
                      label=f"{name}, batch {batch}, transformers' forward")
            if batch == smallest:
                right.plot(contexts, [c["state_bytes"] / 2**20 for c in cells], marker="o", label=name)
    left.set(xscale="log", xlabel="context (tokens)", ylabel="decode tokens/s")
    right.set(xscale="log", xlabel="context (tokens)", ylabel=f"cache MiB at batch {smallest} (KV + Mamba state)")
    left.legend(fontsize=6)
    right.legend(fontsize=6)
    fig.suptitle(decode_speed.machine_line(record["machine"]), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
