"""A short trainer loop (after OLMo-core): the objective computes the loss, callbacks do the rest.

    trainer = Trainer(CausalLMObjective(model), PackedSequences("tokens/train", 128), config,
                      callbacks=[CheckpointCallback(out / "checkpoints", 100, 2), MetricsCallback(...)])
    state = trainer.fit()

One step: set the WSD learning rate, draw `grad_accum` micro-batches (dicts of tensors) from the seeded
sampler at the current data position, let the objective turn each into a summed loss, backpropagate it
divided by the step's label-token count (which the objective counts), clip, and take an AdamW step, unless the loss or gradient norm is non-finite, in which case the
update is skipped and counted. Everything a resumed run needs is in `state_dict()`.

Data parallel (a process group of `world` ranks, model wrapped by `parallelize`): one step draws the
global positions `[position, position + world * micro_batch_size * grad_accum)`; micro-batch `k` of
rank `r` takes `micro_batch_size` of them at `position + (k * world + r) * micro_batch_size`. The
label-token count and the loss are summed over ranks, so a step sees exactly the batch a single process
with `world` times the micro-batch (or accumulation) sees, and logs the same loss on every rank.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from factory.errors import UserError
from factory.train.optim import build_optimizer
from factory.train.parallel import world
from factory.train.sampler import ShuffledSamples
from factory.train.schedule import wsd_lr

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp8": torch.bfloat16, "nvfp4": torch.bfloat16}


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
    """A side concern of training (checkpoints, metrics, plots). Override what you need.

    A callback that `marks_progress` (the checkpoint) restores the run before the others start and saves
    a step after the others have recorded it, so a kill between two callbacks never leaves a step that
    resumes as done without its records.
    """

    marks_progress = False

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


class Trainer:
    """Train `objective` (an nn.Module that turns a batch dict into a `LossOutput`, with `label_tokens(batch)`).

    `data` is a sequence of samples (read in the seeded order of `config.seed`) or a sample source with
    `sample(position)` (e.g. `BlendedSamples`). A sample is a token window (a tensor, batched as
    `{"input_ids": (B, T + 1)}`) or a dict of tensors (batched key by key, e.g. `input_ids` and masked
    `labels` for SFT). Build the trainer after `parallelize`.
    """

    def __init__(self, objective: nn.Module, data: Sequence[torch.Tensor] | Any, config: Any,
                 callbacks: Sequence[Callback] = (), device: str | torch.device = "cpu") -> None:
        self.objective = objective
        self.data = data
        self.config = config
        self.callbacks = list(callbacks)  # called in order, except that progress markers start first and end last
        self.device = torch.device(device)
        self.samples = data if hasattr(data, "sample") else ShuffledSamples(data, config.seed)
        self.rank, self.world_size = world()
        # The ranks that split the batch (a model-parallel engine narrows them to its data-parallel group).
        self.data_rank, self.data_size, self.data_group = self.rank, self.world_size, None
        fused = config.fused_optimizer if config.fused_optimizer is not None else self.device.type == "cuda"
        self.optimizer = build_optimizer(objective, config.lr, config.betas, config.weight_decay, fused=fused)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.state = TrainState()

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        self.objective.train()
        for cb in sorted(self.callbacks, key=lambda c: not c.marks_progress):
            cb.on_train_start(self)
        in_step_order = sorted(self.callbacks, key=lambda c: c.marks_progress)
        while self.state.step < self.config.steps:
            metrics = self.train_step()
            for cb in in_step_order:
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
        start = time.perf_counter()
        lr, batches, tokens = self._begin_step()
        # DDP and FSDP average gradients over ranks; scaling by world makes the result the global sum / tokens.
        scale = self.world_size / max(tokens, 1)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        for batch in batches:
            with self._autocast():
                out = self.objective(batch)
            (out.loss_sum * scale).backward()
            loss_sum += out.loss_sum.detach().float()
        loss = (self._data_sum(loss_sum) / max(tokens, 1)).item()
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        grad_norm = (grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm).item()  # FSDP: DTensor
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if not skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self._end_step(start, lr, loss, grad_norm, tokens, skipped)

    # --- what every engine's step shares (the Megatron engine's trainer overrides only the middle) ------------
    def _begin_step(self) -> tuple[float, list[dict[str, torch.Tensor]], int]:
        """The step's learning rate (set on every parameter group), this rank's `grad_accum` micro-batches (the
        data position moves past every data rank's), and the step's label tokens summed over the data ranks."""
        cfg, state = self.config, self.state
        lr = wsd_lr(state.step, peak_lr=cfg.lr, total_steps=cfg.steps, warmup_steps=cfg.warmup_steps,
                    decay_fraction=cfg.decay_fraction, min_lr_ratio=cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = [self._batch(k) for k in range(cfg.grad_accum)]
        state.position += self.data_size * cfg.micro_batch_size * cfg.grad_accum
        local_tokens = sum(self.objective.label_tokens(batch) for batch in batches)
        tokens = int(self._data_sum(torch.tensor(float(local_tokens), device=self.device)).item())
        return lr, batches, tokens

    def _end_step(self, start: float, lr: float, loss: float, grad_norm: float, tokens: int,
                  skipped: bool) -> StepMetrics:
        """Count the step (a non-finite loss or gradient norm counts as skipped: the optimizer did not step)."""
        state = self.state
        if skipped:
            state.skipped_steps += 1
            state.consecutive_nonfinite += 1
        else:
            state.consecutive_nonfinite = 0
        state.step += 1
        state.tokens_seen += tokens
        elapsed = time.perf_counter() - start
        return StepMetrics(step=state.step, loss=loss, lr=lr, grad_norm=grad_norm, tokens=tokens,
                           tokens_per_s=tokens / max(elapsed, 1e-9), skipped=skipped, skipped_steps=state.skipped_steps)

    def _batch(self, k: int) -> dict[str, torch.Tensor]:
        """This rank's micro-batch `k` of the step: {"input_ids": (micro_batch_size, seq_len + 1)} for token
        windows, or each key of dict samples stacked. Rows are split over the data ranks only."""
        n = self.config.micro_batch_size
        first = self.state.position + (k * self.data_size + self.data_rank) * n
        samples = [self.samples.sample(p) for p in range(first, first + n)]
        if isinstance(samples[0], Mapping):
            return {key: torch.stack([s[key] for s in samples]).to(self.device) for key in samples[0]}
        return {"input_ids": torch.stack(samples).to(self.device)}  # (B, T + 1)

    def _data_sum(self, x: torch.Tensor) -> torch.Tensor:
        """`x` summed over the data-parallel ranks (every rank, unless an engine splits the model over some)."""
        if self.data_size > 1:
            torch.distributed.all_reduce(x, group=self.data_group)
        return x

    def _autocast(self):
        dtype = AUTOCAST[self.config.precision]
        if dtype is not None:
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    # --- resumable state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Full (unsharded) model and optimizer states keyed by parameter name, progress, every rank's RNG
        states, and the sample source's own state when it has one ("data"); loadable with
        `torch.load(weights_only=True)`. A collective: call it on every rank (FSDP gathers the shards); the
        tensors are complete on rank 0 only."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        rng = _rng_state(self.objective)
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        state = {
            "model": get_model_state_dict(self.objective, options=options),
            "optimizer": get_optimizer_state_dict(self.objective, self.optimizer, options=options),
            "trainer": {k: v for k, v in asdict(self.state).items() if k != "last_checkpoint"},
            "rng": gathered,  # one entry per rank: ranks draw different data, so their streams differ
        }
        if hasattr(self.samples, "state_dict"):  # a sample source with state of its own (RL rollouts)
            state["data"] = self.samples.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], checkpoint: Path | None = None) -> None:
        """Restore a `state_dict()` on every rank (each passes the full state it read from disk)."""
        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.objective, state["model"], options=options)
        set_optimizer_state_dict(self.objective, self.optimizer, state["optimizer"], options=options)
        self.state = TrainState(**state["trainer"], last_checkpoint=str(checkpoint) if checkpoint else None)
        if state.get("data") is not None and hasattr(self.samples, "load_state_dict"):
            self.samples.load_state_dict(state["data"])
        rngs = state["rng"]
        _set_rng_state(self.objective, rngs[self.rank] if self.rank < len(rngs) else rngs[0])


def _rng_state(model: nn.Module) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
        # NVFP4 stochastic rounding draws from per-module generators (see NVFP4Linear.generator)
        "modules": {f"{name}@{dev}": gen.get_state() for name, m in model.named_modules()
                    for dev, gen in getattr(m, "_generators", {}).items()},
    }


def _set_rng_state(model: nn.Module, rng: dict[str, Any]) -> None:
    # RNG states must be CPU byte tensors, whatever map_location moved them to
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    random.setstate(_as_tuples(rng["python"]))
    modules = dict(model.named_modules())
    for key, value in rng.get("modules", {}).items():
        name, _, dev = key.rpartition("@")
        if hasattr(modules.get(name), "generator"):
            modules[name].generator(torch.device(dev)).set_state(value.cpu())


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples; a serialised state may come back with lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
