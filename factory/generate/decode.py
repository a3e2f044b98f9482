"""The factory's in-process decode loop: every prompt x sample as one stream through a fixed set of slots.

    completions = decode(model, prompts, max_new_tokens=64, sampling=Sampling(0.8, top_p=0.95),
                         stop_ids=[eos], seeds=[sequence_seed(seed, i) for i in range(len(prompts))], slots=8)

`prompts` are token id lists (repeat a prompt G times for G samples: it is prefilled once); each completion is
the generated ids, with the stop token when the sequence ended by itself, without padding. Continuous batching:
the first `slots` sequences are prefilled and decoded together, one token each per step; a sequence that emits a
stop id or reaches `max_new_tokens` leaves at once (per-sequence stopping) and the next waiting sequence is
prefilled into its slot, so a batch never idles on its longest member. When none are waiting the batch shrinks
(the last sequence moves into the freed slot), so the step runs only on live rows.

Greedy completions are what transformers' `generate` gives each prompt alone (tests/generate/test_decode.py, every
preset); sampled ones depend only on each sequence's seed (`factory.generate.sampling`), so they are the same
for any `slots`, with the reference Mamba step (`reference=True`) or the fast one, and after a resume.

`supports_fast_decode(model)` says whether a model takes this path (NemotronH); callers keep transformers'
`generate` for other architectures (Llama, Qwen, Mistral imports) and say so in their docstrings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch

from factory.generate.hybrid_decoder import NemotronHDecoder, supports_fast_decode
from factory.generate.sampling import Sampling, choose_tokens

__all__ = ["decode", "supports_fast_decode"]

GREEDY = Sampling()


@torch.no_grad()
def decode(model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
           sampling: Sampling = GREEDY, stop_ids: Sequence[int] = (), seeds: Sequence[int] | None = None,
           slots: int = 8, reference: bool = False) -> list[list[int]]:
    """Completions (token ids) of every prompt, in input order; see the module docstring."""
    if not prompts:
        return []
    if not sampling.greedy and (seeds is None or len(seeds) != len(prompts)):
        raise ValueError("sampling needs one seed per prompt")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("a prompt has no tokens")
    slots = max(1, min(slots, len(prompts)))
    training = model.training
    model.eval()  # a policy mid-training: no gradient checkpointing (which drops the prefill's cache), no dropout
    try:
        return _decode(model, prompts, max_new_tokens, sampling, stop_ids, seeds, slots, reference)
    finally:
        model.train(training)


def _decode(model, prompts, max_new_tokens, sampling, stop_ids, seeds, slots, reference) -> list[list[int]]:
    decoder = NemotronHDecoder(model, slots, max(map(len, prompts)) + max_new_tokens, reference=reference)
    device = decoder.device
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)
    seed_of = torch.tensor([s & (2**63 - 1) for s in seeds], dtype=torch.long) if seeds is not None else None
    out: list[list[int]] = [[] for _ in prompts]
    waiting = deque(range(len(prompts)))
    active: list[int] = []  # the sequence in each of the first len(active) slots

    def choose(logits: torch.Tensor, rows: list[int]) -> list[int]:
        """The next token of sequences `rows` from their logits (len(rows), V)."""
        if sampling.greedy:
            tokens = choose_tokens(logits, sampling)
        else:
            counters = torch.tensor([len(out[i]) for i in rows], dtype=torch.long, device=logits.device)
            tokens = choose_tokens(logits, sampling, seed_of[rows].to(logits.device), counters)
        return tokens.tolist()

    def finished(i: int) -> bool:
        return len(out[i]) >= max_new_tokens or (len(stops) > 0 and out[i][-1] in stop_ids)

    def admit() -> None:
        """Prefill waiting sequences into the free slots; equal prompts once, prompts of one length together."""
        while waiting and len(active) < slots:
            take = [waiting.popleft() for _ in range(min(slots - len(active), len(waiting)))]
            distinct: dict[tuple[int, ...], list[int]] = {}
            for i in take:
                distinct.setdefault(tuple(prompts[i]), []).append(i)
            by_length: dict[int, list[tuple[int, ...]]] = {}
            for prompt in distinct:
                by_length.setdefault(len(prompt), []).append(prompt)
            for length, group in by_length.items():
                logits, cache = decoder.prefill(torch.tensor(group, dtype=torch.long))  # (len(group), V)
                rows = [i for prompt in group for i in distinct[prompt]]
                row_of = [r for r, prompt in enumerate(group) for _ in distinct[prompt]]
                for i, token in zip(rows, choose(logits[row_of], rows)):
                    out[i].append(token)
                for i, r in zip(rows, row_of):
                    if not finished(i):
                        decoder.load(len(active), cache, r, length)
                        active.append(i)

    admit()
    while active:
        logits = decoder.step(torch.tensor([out[i][-1] for i in active], dtype=torch.long, device=device))
        for i, token in zip(active, choose(logits, active)):
            out[i].append(token)
        for slot in range(len(active) - 1, -1, -1):  # descending, so the last slot is always a live one
            if finished(active[slot]):
                last = len(active) - 1
                if slot != last:
                    decoder.move(last, slot)
                    active[slot] = active[last]
                active.pop()
        admit()
    return out

