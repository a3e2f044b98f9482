"""Measure the peak RSS growth of one real training step of the factory's trainer, in a fresh process.

    python tests/cost/measure_step.py PRESET:VOCAB:BATCH:SEQ_LEN ...   # prints {PRESET: peak RSS growth in bytes} as JSON

Run it with MALLOC_MMAP_THRESHOLD_=65536 so that glibc hands large freed blocks back to the OS and the
resident size follows live tensors. A warm-up step on a throwaway batch loads everything transformers
imports lazily. Each measurement starts before its model exists and runs two steps, so that the second
step's forward and backward run with AdamW's moments allocated, as every later step of a run does.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading

import torch


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def steps(preset: str, vocab: int, batch: int, seq_len: int, n: int = 2) -> None:
    from factory.model import PRESETS, build_model
    from factory.train import Trainer, TrainConfig
    from factory.train.objectives.causal_lm import CausalLMObjective

    torch.manual_seed(0)
    model = build_model(PRESETS[preset](), vocab)
    windows = [torch.randint(0, vocab, (seq_len + 1,)) for _ in range(batch)]
    config = TrainConfig(seq_len=seq_len, micro_batch_size=batch, steps=10, warmup_steps=1, decay_fraction=0.1)
    trainer = Trainer(CausalLMObjective(model), windows, config)
    trainer.objective.train()
    for _ in range(n):
        trainer.train_step()


def peak_growth(preset: str, vocab: int, batch: int, seq_len: int) -> int:
    gc.collect()
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    steps(preset, vocab, batch, seq_len)
    done.set()
    sampler.join()
    return peak[0] - base


def main() -> None:
    torch.set_num_threads(1)
    steps("tiny", 256, 1, 16, n=1)  # warm-up: lazy imports, kernels
    out = {}
    for arg in sys.argv[1:]:
        preset, vocab, batch, seq_len = arg.split(":")
        out[preset] = peak_growth(preset, int(vocab), int(batch), int(seq_len))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
