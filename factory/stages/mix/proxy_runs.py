"""Proxy runs: short training runs of a small model on a candidate mixture, scored on the target set.

Proxies are models over UTF-8 bytes (`factory.model.byte_level`), so the search needs no tokenizer: each dataset
is one stream of bytes with the end-of-document symbol after every document (`byte_stream`, vocabulary 257),
saved as `NAME.npy` (uint16) in a scratch folder that the workers memory-map. A run is a pure function of its `ProxyJob` (seeded, one thread), so the results
do not depend on how many processes train them.

    datasets = write_streams({"cluster-00": texts0, "cluster-01": texts1, "target": target}, folder)
    losses = run_proxies([ProxyJob(folder, names, weights, config.proxy, seed=i) for i, weights in ...], workers=2)
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from factory.model.byte_level import byte_model, byte_stream
from factory.model.checkpoints import lm_loss
from factory.stages.mix.config import ProxyConfig
from factory.train.config import BlendPhase, TrainConfig
from factory.train.objectives.causal_lm import CausalLMObjective
from factory.train.sampler import BlendedSamples
from factory.train.trainer import Trainer

__all__ = ["ByteWindows", "ProxyJob", "ProxyPool", "run_proxies", "train_proxy", "write_streams"]


def write_streams(streams: Mapping[str, Iterable[str]], folder: Path) -> dict[str, int]:
    """Write each named text stream as `folder/NAME.npy`; return its symbol count per name."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, texts in streams.items():
        data = byte_stream(texts)
        np.save(folder / f"{name}.npy", data)
        sizes[name] = int(data.size)
    return sizes


class ByteWindows:
    """A byte stream cut into windows of seq_len + 1 symbols sharing one symbol (as `factory.tokens.PackedSequences`)."""

    def __init__(self, path: Path, seq_len: int) -> None:
        self.data = np.load(path, mmap_mode="r")  # (n,) uint16
        self.seq_len = seq_len

    def __len__(self) -> int:
        return max(int(self.data.size) - 1, 0) // self.seq_len

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = index * self.seq_len
        return torch.from_numpy(np.asarray(self.data[start : start + self.seq_len + 1], dtype=np.int64))  # (seq_len + 1,)


@dataclass(frozen=True)
class ProxyJob:
    """One proxy run: train on `names` mixed by `weights`, score on `folder/target.npy`."""

    folder: Path
    names: tuple[str, ...]
    weights: tuple[float, ...]
    config: ProxyConfig
    seed: int


def train_proxy(job: ProxyJob) -> float:
    """Train the proxy model on the job's mixture; its mean next-byte loss (nats) on the target windows."""
    cfg = job.config
    torch.manual_seed(job.seed)
    datasets = {name: ByteWindows(job.folder / f"{name}.npy", cfg.seq_len) for name in job.names}
    weights = {n: w for n, w in zip(job.names, job.weights) if w > 0}
    train = TrainConfig(seq_len=cfg.seq_len, micro_batch_size=cfg.micro_batch_size, steps=cfg.steps, lr=cfg.lr,
                        warmup_steps=min(cfg.warmup_steps, cfg.steps), decay_fraction=0.0 if cfg.steps < 5 else 0.2,
                        seed=job.seed, checkpoint_interval=0)
    data = BlendedSamples({n: datasets[n] for n in weights}, [BlendPhase(until_fraction=1.0, weights=weights)],
                          cfg.steps * cfg.micro_batch_size, job.seed)
    model = byte_model(cfg.model.resolve(), eod=True)
    Trainer(CausalLMObjective(model), data, train).fit()
    target = ByteWindows(job.folder / "target.npy", cfg.seq_len)
    n = min(len(target), cfg.eval_windows)
    windows = torch.stack([target[i] for i in range(n)])  # (n, seq_len + 1)
    model.eval()
    return lm_loss(model, windows)


def _one_thread() -> None:
    torch.set_num_threads(1)


# What the fork server imports once, so that every worker forked from it starts with torch and the trainer loaded.
PRELOAD = ["torch", "transformers.models.nemotron_h.modeling_nemotron_h", "factory.model.byte_level", "factory.model.checkpoints",
           "factory.train.trainer", "factory.train.sampler", "factory.train.objectives.causal_lm", "factory.stages.mix.proxy_runs"]


def _context():
    """A forkserver context: workers fork from a clean server process that imported `PRELOAD` once. Not a plain
    fork, since the parent has run torch (the embedding model) and a forked child could inherit its thread pools
    in a locked state; not spawn, which imports torch again in every worker."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class ProxyPool:
    """A process pool that trains proxies, one thread each, kept across rounds. Like any multiprocessing
    pool, a script that uses it needs the `if __name__ == "__main__":` guard."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ProxyPool:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=_context(),
                                             initializer=_one_thread)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def run(self, jobs: Sequence[ProxyJob]) -> list[float]:
        """The target loss of each job, in order."""
        if self._pool is None:  # in this process, on one thread too, so the numbers match the pool's
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return [train_proxy(job) for job in jobs]
            finally:
                torch.set_num_threads(threads)
        return list(self._pool.map(train_proxy, jobs))


def run_proxies(jobs: Sequence[ProxyJob], workers: int) -> list[float]:
    """Train `jobs` in a fresh pool of `workers` processes; their target losses, in order."""
    with ProxyPool(workers) as pool:
        return pool.run(jobs)
