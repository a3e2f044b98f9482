"""A short trainer loop (after OLMo-core): the objective computes the loss, callbacks do the rest.

    trainer = Trainer(CausalLMObjective(model), PackedSequences("tokens/train", 128), config,
                      callbacks=[CheckpointCallback(out / "checkpoints", 100, 2), MetricsCallback(...)])
    state = trainer.fit()

One step: set the WSD learning rate, draw `grad_accum` micro-batches from the seeded sampler at the
current data position, backpropagate each micro-batch's summed loss divided by the step's label-token
count, clip, and take an AdamW step, unless the loss or gradient norm is non-finite, in which case the
update is skipped and counted. Everything a resumed run needs is in `state_dict()`.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from factory.errors import UserError
from factory.train.config import TrainConfig
from factory.train.objective import IGNORE_INDEX
from factory.train.optim import build_optimizer
from factory.train.sampler import SeededSampler
from factory.train.schedule import wsd_lr


class NonFiniteLossError(UserError):
    """Training diverged: too many consecutive steps with a non-finite loss or gradient norm."""


@dataclass
class TrainState:
    """Progress of a run; checkpointed with the model and optimizer."""

    step: int = 0  # optimizer steps taken (or skipped) so far
    position: int = 0  # samples drawn from the sampler so far
    tokens_seen: int = 0
    skipped_steps: int = 0
    consecutive_nonfinite: int = 0
    last_checkpoint: str | None = None


@dataclass(frozen=True)
class StepMetrics:
    step: int  # 1-based: the number of steps done after this one
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    tokens_per_s: float
    skipped: bool
    skipped_steps: int


class Callback:
    """A side concern of training (checkpoints, metrics, plots). Override what you need."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


class Trainer:
    """Train `objective` (an nn.Module returning `LossOutput`) on fixed-length token windows."""

    def __init__(self, objective: nn.Module, data: Sequence[torch.Tensor], config: TrainConfig,
                 callbacks: Sequence[Callback] = (), device: str | torch.device = "cpu") -> None:
        self.objective = objective
        self.data = data
        self.config = config
        self.callbacks = list(callbacks)  # called in order: put the checkpoint callback first
        self.device = torch.device(device)
        self.sampler = SeededSampler(len(data), config.seed)
        self.optimizer = build_optimizer(objective, config.lr, config.betas, config.weight_decay)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.state = TrainState()

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        self.objective.train()
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.state.step < self.config.steps:
            metrics = self.train_step()
            for cb in self.callbacks:
                cb.on_step_end(self, metrics)
            if self.state.consecutive_nonfinite >= self.config.max_consecutive_nonfinite:
                raise NonFiniteLossError(
                    f"step {self.state.step}: loss or gradient norm non-finite for {self.state.consecutive_nonfinite} "
                    f"consecutive steps (max_consecutive_nonfinite={self.config.max_consecutive_nonfinite}); "
                    f"last good checkpoint: {self.state.last_checkpoint or 'none'}. Lower lr or grad_clip, or check the data."
                )
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.state

    def train_step(self) -> StepMetrics:
        cfg, state = self.config, self.state
        start = time.perf_counter()
        lr = wsd_lr(state.step, peak_lr=cfg.lr, total_steps=cfg.steps, warmup_steps=cfg.warmup_steps,
                    decay_fraction=cfg.decay_fraction, min_lr_ratio=cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        batches = [self._next_batch() for _ in range(cfg.grad_accum)]
        tokens = sum(int((labels != IGNORE_INDEX).sum()) for _, labels in batches)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        for input_ids, labels in batches:
            with self._autocast():
                out = self.objective(input_ids, labels)
            (out.loss_sum / max(tokens, 1)).backward()
            loss_sum += out.loss_sum.detach().float()
        loss = (loss_sum / max(tokens, 1)).item()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm).item()

        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if skipped:
            state.skipped_steps += 1
            state.consecutive_nonfinite += 1
        else:
            self.optimizer.step()
            state.consecutive_nonfinite = 0
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_seen += tokens
        elapsed = time.perf_counter() - start
        return StepMetrics(step=state.step, loss=loss, lr=lr, grad_norm=grad_norm, tokens=tokens,
                           tokens_per_s=tokens / max(elapsed, 1e-9), skipped=skipped, skipped_steps=state.skipped_steps)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, labels), each (micro_batch_size, seq_len) int64, from the current data position."""
        n = self.config.micro_batch_size
        idx = self.sampler.indices(self.state.position, n)
        self.state.position += n
        windows = torch.stack([self.data[i] for i in idx]).to(self.device)  # (B, seq_len + 1)
        return windows[:, :-1], windows[:, 1:]

    def _autocast(self):
        if self.config.dtype == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- resumable state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, progress and RNG states; loadable with `torch.load(weights_only=True)`."""
        np_state = np.random.get_state()
        return {
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": {k: v for k, v in asdict(self.state).items() if k != "last_checkpoint"},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict[str, Any], checkpoint: Path | None = None) -> None:
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = TrainState(**state["trainer"], last_checkpoint=str(checkpoint) if checkpoint else None)
        rng = state["rng"]  # RNG states must be CPU byte tensors, whatever map_location moved them to
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
        random.setstate(_as_tuples(rng["python"]))


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples; a serialised state may come back with lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
