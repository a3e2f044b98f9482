"""Decode tokens/s and state bytes of the factory's decoder at a given context (benches and the evaluate stage).

    rate, state_bytes = decode_at_context(model, context=8192, batch=1, steps=8)

Decode cost per token depends on the context only through the cache, so the cache is filled to the context
directly: a short real prefill builds every state, then each attention layer's keys and values are random ones
for `context` positions (`NemotronHDecoder.fill_context`); Mamba layers keep their fixed-size states. State bytes
are what the sequences hold after the timed steps: keys and values up to their length, Mamba conv and SSM states.

A speed means something only with the machine that measured it: `machine(device)` records it (CPU model, GPU name,
torch threads, torch version) and `machine_line` says it in one line, for tables and the release card.

The evaluate step's throughput record (`factory.stages.evaluate.throughput.measure`: {"machine", "parameters",
"cells", "generation"}) is read here, below both the step that writes it and the release card that quotes it:
`throughput_metrics` (the step's metrics), `pairs` and `rate` (its cells), `is_speed_metric` (which metric names
are decode-speed figures, so that a card quotes none without the machine).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from factory.generate.hybrid_decoder import NemotronHDecoder

__all__ = ["decode_at_context", "is_speed_metric", "machine", "machine_line", "pairs", "rate", "throughput_metrics"]


@torch.no_grad()
def decode_at_context(model: torch.nn.Module, context: int, batch: int, steps: int, warmup: int = 2,
                      seed: int = 0) -> tuple[float, int]:
    """(decode tokens/s, state bytes) of `batch` sequences with `context` tokens each, timed over `steps` steps
    after `warmup` untimed ones."""
    model.eval()
    decoder = NemotronHDecoder(model, batch, context + warmup + steps + 1)
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.config.vocab_size, (batch, 16), generator=generator)
    logits, cache = decoder.prefill(prompt)
    for row in range(batch):
        decoder.load(row, cache, row, prompt.shape[1])
    decoder.fill_context(context, generator=torch.Generator(decoder.device).manual_seed(seed))
    tokens = logits.argmax(-1)
    for _ in range(warmup):
        tokens = decoder.step(tokens).argmax(-1)
    synchronize = torch.cuda.synchronize if decoder.device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        tokens = decoder.step(tokens).argmax(-1)
    synchronize()
    return batch * steps / (time.perf_counter() - started), decoder.state_bytes()


def machine(device: torch.device | str) -> dict[str, Any]:
    """What measured a speed: {"device", "cpu" (model name), "gpu" (name, or None on CPU), "torch_threads", "torch"}."""
    device = torch.device(device)
    return {"device": device.type, "cpu": _cpu_model(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def machine_line(record: Mapping[str, Any]) -> str:
    """`machine`'s record in words, e.g. "CPU Intel(R) Xeon(R) ... (torch 2.13, 1 thread)"."""
    threads = record.get("torch_threads")
    on_cpu = f"CPU {record.get('cpu') or '?'} (torch {record.get('torch', '?')}, {threads} thread{'s' if threads != 1 else ''})"
    return f"GPU {record['gpu']}, host {on_cpu}" if record.get("gpu") else on_cpu


def rate(cell: Mapping[str, Any]) -> float:
    """What a generating stage gets: the decoder's tokens/s, else transformers' forward's."""
    return cell["decoder_tokens_per_s"] if cell["decoder_tokens_per_s"] is not None else cell["forward_tokens_per_s"]


def pairs(record: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(this model's cell, the transformer's at the same context and batch, or None), in measurement order."""
    other = {(c["context"], c["batch"]): c for c in record["cells"] if c["model"] == "transformer"}
    return [(c, other.get((c["context"], c["batch"]))) for c in record["cells"] if c["model"] == "this model"]


def throughput_metrics(record: Mapping[str, Any], batch: int) -> dict[str, float]:
    """The step's metrics at `batch` (the configured one), per context c: decode_tokens_per_s@c (the decoder's, else
    transformers'), cache_mib@c, hf_decode_tokens_per_s@c (transformers' cached forward), decoder_speedup@c (the two's
    ratio); with the baseline transformer_decode_tokens_per_s@c, transformer_cache_mib@c, speed_vs_transformer@c;
    generation's generate_tokens_per_s, decoder_generate_tokens_per_s, decoder_speedup_generate."""
    out: dict[str, float] = {}
    for mine, theirs in pairs(record):
        if mine["batch"] != batch:
            continue
        c = mine["context"]
        out |= {f"decode_tokens_per_s@{c}": rate(mine), f"cache_mib@{c}": mine["state_bytes"] / 2**20,
                f"hf_decode_tokens_per_s@{c}": mine["forward_tokens_per_s"]}
        if mine["decoder_tokens_per_s"] is not None:
            out[f"decoder_speedup@{c}"] = mine["decoder_tokens_per_s"] / mine["forward_tokens_per_s"]
        if theirs is not None:
            out |= {f"transformer_decode_tokens_per_s@{c}": rate(theirs),
                    f"transformer_cache_mib@{c}": theirs["state_bytes"] / 2**20,
                    f"speed_vs_transformer@{c}": rate(mine) / rate(theirs)}
    gen = record.get("generation")
    if gen:
        out |= {"generate_tokens_per_s": gen["generate_tokens_per_s"], "decoder_generate_tokens_per_s": gen["decoder_tokens_per_s"],
                "decoder_speedup_generate": gen["decoder_tokens_per_s"] / gen["generate_tokens_per_s"]}
    return out


# every metric name `throughput_metrics` gives, by its start; "@c" is the context
SPEED_METRICS = ("decode_tokens_per_s@", "cache_mib@", "hf_decode_tokens_per_s@", "decoder_speedup", "transformer_decode_tokens_per_s@",
                 "transformer_cache_mib@", "speed_vs_transformer@", "generate_tokens_per_s", "decoder_generate_tokens_per_s")


def is_speed_metric(name: str) -> bool:
    """Whether an evaluation metric is one of the throughput measurement's figures."""
    return name.startswith(SPEED_METRICS)


def _cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's on Linux, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
