"""Resumable checkpoints: `checkpoints/step-NNNNNN/`, written atomically, the last k kept.

A checkpoint is written into a hidden temporary folder beside its final name and renamed into place
only when complete, so a folder named `step-*` is always whole; a run killed mid-write leaves only a
`.tmp-*` folder, which the next start deletes.

    step-000100/
        model.pt       full objective state dict (parameter names as in one process)
        optimizer.pt   full AdamW state, keyed by parameter name
        trainer.pt     progress (step, data position, tokens, skip counters), each rank's RNG states and the
                       sample source's own state, if any (RL: rollout generator, temperature, current rollout)
        meta.json      {"step": 100, "position": 800, ...} for people and tools

Distributed runs (DDP or FSDP2) write the same files: the trainer gathers full state dicts to rank 0
(`torch.distributed.checkpoint.state_dict` with `full_state_dict=True`), rank 0 alone writes, and every
rank reads the whole checkpoint on resume. So a checkpoint does not depend on the world size (a 2-rank
run may resume on one process). Gathering to one rank bounds this to models that fit one host's memory;
a sharded `torch.distributed.checkpoint` layout is the way past that, not built here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from factory.logs import get_logger
from factory.train.parallel import world
from factory.train.trainer import Callback

if TYPE_CHECKING:
    from factory.train.trainer import StepMetrics, Trainer

_STEP_DIR = re.compile(r"^step-(\d{6,})$")
_FILES = ("model.pt", "optimizer.pt", "trainer.pt", "meta.json")
log = get_logger("factory.train.checkpoint")


def checkpoint_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:06d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if all((p / f).is_file() for f in _FILES)]


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: Path, state: dict[str, Any], step: int, keep: int) -> Path:
    """Write `state` (from `Trainer.state_dict()`) as `root/step-NNNNNN`, atomically; keep the last `keep`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(state["model"], tmp / "model.pt")
    torch.save(state["optimizer"], tmp / "optimizer.pt")
    torch.save({"trainer": state["trainer"], "rng": state["rng"], "data": state.get("data")}, tmp / "trainer.pt")
    (tmp / "meta.json").write_text(json.dumps(state["trainer"], indent=2) + "\n")
    for f in tmp.iterdir():  # the data must be on disk before the rename makes it visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # an identical step written by an earlier attempt
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)
    return final


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state dict written by `save_checkpoint` (tensors only: loaded with weights_only=True)."""
    path = Path(path)
    extra = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    return {
        "model": torch.load(path / "model.pt", map_location=map_location, weights_only=True),
        "optimizer": torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True),
        "trainer": extra["trainer"],
        "rng": extra["rng"],
        "data": extra.get("data"),  # the sample source's state (RL rollouts), None for plain data
    }


class CheckpointCallback(Callback):
    """Resume from the latest complete checkpoint at start; save every `interval` steps and at the end."""

    marks_progress = True

    def __init__(self, root: Path, interval: int, keep: int) -> None:
        self.root = Path(root)
        self.interval = interval
        self.keep = keep

    def on_train_start(self, trainer: Trainer) -> None:
        rank, size = world()
        if rank == 0 and self.root.is_dir():
            for stale in self.root.glob(".tmp-*"):  # a write interrupted by a kill
                shutil.rmtree(stale, ignore_errors=True)
        if size > 1:
            torch.distributed.barrier()
        latest = latest_checkpoint(self.root)
        if latest is not None:
            trainer.load_state_dict(load_checkpoint(latest, trainer.device), checkpoint=latest)
            log.info("resumed", checkpoint=str(latest), step=trainer.state.step, position=trainer.state.position)

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        step = trainer.state.step
        if self.interval and (step % self.interval == 0 or step == trainer.config.steps):
            rank, size = world()
            state = trainer.state_dict()  # a collective: every rank takes part
            path = checkpoint_dir(self.root, step)
            if rank == 0:
                save_checkpoint(self.root, state, step, self.keep)
            if size > 1:
                torch.distributed.barrier()  # nobody moves on (or resumes) before the checkpoint is whole
            if trainer.state.consecutive_nonfinite == 0:
                trainer.state.last_checkpoint = str(path)
            log.info("checkpoint_saved", checkpoint=str(path), step=step)
