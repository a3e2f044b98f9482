"""Decode tokens/s and state bytes of the factory's decoder at a given context (benches and the evaluate stage).

    rate, state_bytes = decode_at_context(model, context=8192, batch=1, steps=8)

Decode cost per token depends on the context only through the cache, so the cache is filled to the context
directly: a short real prefill builds every state, then each attention layer's keys and values are random ones
for `context` positions (`NemotronHDecoder.fill_context`); Mamba layers keep their fixed-size states. State bytes
are what the sequences hold after the timed steps: keys and values up to their length, Mamba conv and SSM states.
"""

from __future__ import annotations

import time

import torch

from factory.generate.hybrid_decoder import NemotronHDecoder

__all__ = ["decode_at_context"]


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
