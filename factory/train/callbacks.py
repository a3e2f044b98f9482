"""Training side concerns as callbacks: metrics (tracker + `metrics.jsonl`), the loss-curve plot, and the
Hugging Face export of the trained model."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.logs import get_logger
from factory.stage import StepContext
from factory.train.trainer import Callback, StepMetrics, Trainer

if TYPE_CHECKING:
    import torch

    from factory.model.state_dict import StateDictAdapter

log = get_logger("factory.train")


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class MetricsCallback(Callback):
    """Every step to `metrics.jsonl` (one JSON object per line); every `log_interval` steps to the tracker.

    The tracker gets the mean loss over the interval, the current lr and grad norm, tokens/s and the
    running count of skipped steps. On resume, lines past the restored step are dropped, so the file
    holds each step once.
    """

    def __init__(self, path: Path, ctx: StepContext, log_interval: int) -> None:
        self.path = Path(path)
        self.ctx = ctx
        self.log_interval = max(1, log_interval)
        self._window: list[StepMetrics] = []

    def on_train_start(self, trainer: Trainer) -> None:
        kept = [r for r in read_metrics(self.path) if r["step"] <= trainer.state.step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        record = {
            "step": metrics.step,
            "loss": _finite_or_none(metrics.loss),
            "lr": metrics.lr,
            "grad_norm": _finite_or_none(metrics.grad_norm),
            "tokens": metrics.tokens,
            "tokens_seen": trainer.state.tokens_seen,
            "tokens_per_s": metrics.tokens_per_s,
            "skipped": metrics.skipped,
            "skipped_steps": metrics.skipped_steps,
        }
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
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
    import matplotlib

    matplotlib.use("Agg")  # no display in pods and CI
    import matplotlib.pyplot as plt

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


class HFExportCallback(Callback):
    """At the end of training, write the model as a stock transformers folder (`save_pretrained`) in `model_dir`.

    The trained model may hold training-only modules (FP8 / NVFP4 linears), wrappers (DDP) or shards
    (FSDP), so the export gathers the full state dict (a collective: every rank calls it), maps it to
    Hugging Face names with `adapter`, and loads it into `build_plain()`, a freshly built model with plain
    layers (on the meta device, so building costs nothing); rank 0 writes it. A half-written folder from
    an attempt killed while saving is replaced. With `tokenizer`, its files (chat template included) are
    saved beside the weights, so the checkpoint is a complete Hugging Face folder that later stages (SFT, RL)
    read their tokenizer from.
    """

    def __init__(self, model_dir: Path, build_plain: Callable[[], torch.nn.Module],
                 adapter: StateDictAdapter | None = None, tokenizer: Any | None = None) -> None:
        from factory.model.state_dict import HFAdapter

        self.model_dir = Path(model_dir)
        self.build_plain = build_plain
        self.adapter = adapter or HFAdapter()
        self.tokenizer = tokenizer

    def on_train_end(self, trainer: Trainer) -> None:
        state = full_model_state(trainer.objective.model)  # a collective under FSDP
        if trainer.rank != 0:
            return
        if self.model_dir.exists():
            shutil.rmtree(self.model_dir)
        plain = self.build_plain()
        plain.load_state_dict(self.adapter.to_hf(state), assign=True)
        plain.save_pretrained(self.model_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(self.model_dir)
        log.info("hf_exported", path=str(self.model_dir))


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded, unwrapped model state dict on CPU (complete on rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

