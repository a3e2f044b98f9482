"""Training side concerns as callbacks: metrics (tracker + `metrics.jsonl`) and the loss-curve plot. The
checkpoints are `factory.train.checkpoint`, the Hugging Face export `factory.train.shell`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from factory.logs import get_logger
from factory.stage import StepContext
from factory.train.trainer import Callback, StepMetrics, Trainer

matplotlib.use("Agg")  # no display in pods and CI
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

log = get_logger("factory.train")


class StepLog(Callback):
    """A JSONL file of one record per step. On (re)start, records past the restored step are dropped, so a resumed
    run holds each step once; `append` writes one record (non-finite floats as null: JSON has no NaN)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: Trainer) -> None:
        kept = [r for r in read_metrics(self.path) if r["step"] <= trainer.state.step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict) -> None:
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


class MetricsCallback(StepLog):
    """Every step to `metrics.jsonl` (one JSON object per line); every `log_interval` steps to the tracker.

    The tracker gets the mean loss over the interval, the current lr and grad norm, tokens/s and the
    running count of skipped steps.
    """

    def __init__(self, path: Path, ctx: StepContext, log_interval: int) -> None:
        super().__init__(path)
        self.ctx = ctx
        self.log_interval = max(1, log_interval)
        self._window: list[StepMetrics] = []

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        self.append({"step": metrics.step, "loss": metrics.loss, "lr": metrics.lr, "grad_norm": metrics.grad_norm,
                     "tokens": metrics.tokens, "tokens_seen": trainer.state.tokens_seen,
                     "tokens_per_s": metrics.tokens_per_s, "skipped": metrics.skipped,
                     "skipped_steps": metrics.skipped_steps})
        self._window.append(metrics)
        if metrics.step % self.log_interval == 0 or metrics.step == trainer.config.steps:
            losses = [m.loss for m in self._window if not m.skipped]
            summary = {
                "loss": sum(losses) / len(losses) if losses else math.nan,
                "lr": metrics.lr,
                "grad_norm": metrics.grad_norm,
                "tokens_per_s": sum(m.tokens for m in self._window)
                / max(sum(m.tokens / max(m.tokens_per_s, 1e-9) for m in self._window), 1e-9),
                "skipped_steps": metrics.skipped_steps,
            }
            self.ctx.log_metrics({k: v for k, v in summary.items() if math.isfinite(v)}, step=metrics.step)
            log.info("train_step", step=metrics.step, **{k: round(v, 6) for k, v in summary.items()})
            self._window = []


def read_metrics(path: Path) -> list[dict]:
    """The records of a `metrics.jsonl` (empty when the file does not exist). A last line without its
    newline is a write cut short by a kill; it is left out, and the resumed run writes that step again."""
    path = Path(path)
    if not path.exists():
        return []
    whole, _, _torn = path.read_text().rpartition("\n")
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


class LossPlotCallback(Callback):
    """At the end of training, plot loss against step from `metrics.jsonl` into `loss.png` and log it."""

    def __init__(self, metrics_path: Path, plot_path: Path, ctx: StepContext, title: str = "pretraining loss") -> None:
        self.metrics_path = Path(metrics_path)
        self.plot_path = Path(plot_path)
        self.ctx = ctx
        self.title = title

    def on_train_end(self, trainer: Trainer) -> None:
        plot_loss(read_metrics(self.metrics_path), self.plot_path, self.title)
        self.ctx.log_artifact(self.plot_path)


def plot_loss(records: list[dict], path: Path, title: str = "pretraining loss") -> None:
    points = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded, unwrapped model state dict on CPU (complete on rank 0)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

