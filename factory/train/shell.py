"""The training-stage shell: what every stage that trains a model shares (OLMo-core's train modules on one trainer).

A trainer stage brings its objective, its data and its extra metrics; the shell owns the rest, in this order:

    with TrainingShell(config, output, ctx) as shell:     # join the torchrun process group; seed torch, numpy, random
        model = shell.prepare(load_model(model_dir))      # converters (precision, activation checkpointing), then
                                                          # parallelize (compile, DDP / FSDP2), each as the config asks
        trainer = shell.trainer(CausalLMObjective(model), data, tokenizer=tokenizer)
        result = shell.fit(trainer)                       # resume, train, export `model/`, `final_loss`
    return {**result.summary, ...the stage's own metrics}

The trainer it builds carries the named callbacks, in this order: checkpoints (`checkpoints/`, resume and save, all
ranks), metrics (`metrics.jsonl` and the tracker, rank 0), the loss plot (`loss.png`, rank 0), the stage's own
callbacks, the callbacks a caller adds through the run context (`ctx.callbacks`: probes, tests, kill points), and the
Hugging Face export (`model/`, gathered from every rank, written by rank 0). After `fit`, `checkpoints/` is removed:
the published artifact holds the exported model and the records.

The config's parts (`factory.train.config`) decide what is done: a kind whose config has no `Parallelism` part runs
in one process and is never wrapped; precision and activation checkpointing apply to every kind.

What trains the model is the shell's `Engine`: it lays the model out over the ranks, builds the trainer, and names the
checkpoint and export callbacks. The default is the factory's own (transformers model, torch DDP / FSDP2, `Trainer`,
`CheckpointCallback`, `HFExportCallback`); a stage passes another, such as Megatron-Core's
(`factory.engines.megatron.MegatronEngine`), and the rest of the shell stays as it is:

    with TrainingShell(config, output, ctx, engine=MegatronEngine(layout)) as shell: ...
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from factory.stage import StepContext
from factory.train.callbacks import LossPlotCallback, MetricsCallback, full_model_state, read_metrics
from factory.train.checkpoint import CheckpointCallback
from factory.train.converters import apply_converters, training_converters
from factory.train.parallel import ParallelPlan, distributed, parallelize
from factory.train.trainer import Callback, Trainer, TrainState

FINAL_LOSS_WINDOW = 10  # `final_loss` is the mean of the last this-many finite step losses: less noisy than one


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from: torch (CPU and CUDA), numpy's global one and Python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def final_loss(losses: Sequence[float | None]) -> float:
    """The one definition of a run's `final_loss`: the mean of its last `FINAL_LOSS_WINDOW` finite step losses."""
    finite = [x for x in losses if x is not None and math.isfinite(x)]
    tail = finite[-FINAL_LOSS_WINDOW:]
    return sum(tail) / len(tail) if tail else math.nan


@dataclass
class TrainResult:
    """What `TrainingShell.fit` returns: the trainer's final state and the summary every trainer kind reports."""

    state: TrainState
    summary: dict[str, float] = field(default_factory=dict)


class Engine:
    """What trains the model: the shell's seam for a second engine. This base is the factory's own engine, a
    transformers model converted and wrapped by torch DDP / FSDP2 (`TrainingShell.convert`, `parallelize`), trained
    by `Trainer`, checkpointed by `CheckpointCallback` and exported by `HFExportCallback`. Another engine overrides
    what it does differently; every method takes the shell, which holds the config, the output folder and the rank."""

    name = "factory"

    def start(self, shell: TrainingShell) -> None:
        """Set the engine up, once the shell has joined the process group and seeded the generators."""

    def stop(self) -> None:
        """Undo `start` (the shell calls it on the way out, error or not)."""

    def prepare(self, shell: TrainingShell, model: nn.Module) -> nn.Module:
        """The module to build the objective around, from the transformers model the stage loaded or built."""
        return shell.parallelize(shell.convert(model))

    def trainer(self, shell: TrainingShell, objective: nn.Module, data: Any, callbacks: Sequence[Callback]) -> Trainer:
        return Trainer(objective, data, shell.config, callbacks=callbacks, device=shell.device)

    def checkpoints(self, shell: TrainingShell) -> Callback:
        """The callback that resumes the run and saves it (`checkpoints/`)."""
        return CheckpointCallback(shell.output / "checkpoints", shell.config.checkpoint_interval,
                                  shell.config.keep_checkpoints)

    def export(self, shell: TrainingShell, tokenizer: Any, extra: Mapping[str, nn.Module],
               files: Mapping[str, Callable[[], str]]) -> Callback:
        """The callback that writes the trained model as a stock transformers folder (`model/`)."""
        return HFExportCallback(shell.output / "model", shell.model, shell.plain, tokenizer, extra, files)


class TrainingShell:
    """One training run of a stage (see the module docstring). `config` is the kind's config, composed of the parts
    in `factory.train.config`; `output` the step's staging folder; `ctx` its run context; `engine` what trains the
    model (default: the factory's own)."""

    def __init__(self, config: Any, output: Path, ctx: StepContext, plot_title: str = "training loss",
                 engine: Engine | None = None) -> None:
        self.config, self.output, self.ctx, self.plot_title = config, Path(output), ctx, plot_title
        self.engine = engine or Engine()
        self.output.mkdir(parents=True, exist_ok=True)
        self.rank, self.world_size, self.device = 0, 1, "cpu"
        self.model: nn.Module | None = None  # the transformers model being trained, as loaded (before wrapping)
        self.plain: tuple[type, Any, Any] | None = None  # what the export builds its plain model from (`hold`)
        self._distributed = distributed()

    def __enter__(self) -> TrainingShell:
        self.rank, self.world_size, self.device = self._distributed.__enter__()
        try:
            seed_everything(self.config.seed)
            self.engine.start(self)
        except BaseException:
            self._distributed.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        try:
            self.engine.stop()
        except BaseException:
            self._distributed.__exit__(*sys.exc_info())
            raise
        return self._distributed.__exit__(*exc)

    # --- the model ------------------------------------------------------------------------------------------------
    def hold(self, model: nn.Module) -> None:
        """Keep `model` (a transformers causal LM, the one `model/` exports) and what the export builds its plain
        model from: its class, config and generation config, copied before a converter touches the model (gradient
        checkpointing turns the config's cache off, say)."""
        self.model = model
        self.plain = (type(model), copy.deepcopy(model.config), copy.deepcopy(model.generation_config))

    def convert(self, model: nn.Module) -> nn.Module:
        """Apply the training converters to `model` (a transformers causal LM, the one `model/` exports) in place:
        FP8 / NVFP4 linears per `precision`, then activation checkpointing. Parameters are shared, so the state
        dict keeps its names."""
        self.hold(model)
        return apply_converters(model, training_converters(
            self.config.precision, self.config.precision_options, self.config.activation_checkpointing))

    def parallelize(self, module: nn.Module) -> nn.Module:
        """Move `module` (the converted model, or a module holding it) to the device; with a `Parallelism` part,
        compile its blocks and wrap it for DDP or FSDP2 when more than one rank runs."""
        if self.model is None:
            raise RuntimeError("convert the model before parallelizing it (CONVERTER_ORDER)")
        compile_ = getattr(self.config, "compile", False)
        data_parallel = getattr(self.config, "data_parallel", "ddp")
        if self.world_size > 1 and not hasattr(self.config, "data_parallel"):
            raise RuntimeError(f"{type(self.config).__module__}: this kind runs in one process, not under torchrun")
        return parallelize(module, ParallelPlan(data_parallel=data_parallel, compile=compile_, device=self.device),
                           blocks=self.model.model.layers)

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to build the objective around: `parallelize(convert(model))` with the factory's engine, the
        engine's own layout of it with another."""
        return self.engine.prepare(self, model)

    # --- training -------------------------------------------------------------------------------------------------
    def trainer(self, objective: nn.Module, data: Any, *, tokenizer: Any = None, callbacks: Sequence[Callback] = (),
                export_extra: Mapping[str, nn.Module] | None = None,
                export_files: Mapping[str, Callable[[], str]] | None = None) -> Trainer:
        """The trainer for `objective` on `data`, with the shell's named callbacks around the stage's `callbacks`.

        `tokenizer` is saved beside the exported model; `export_extra` names further modules whose full states are
        written as safetensors files beside it (a reward model's head), `export_files` text files (their
        metadata)."""
        if self.model is None:
            raise RuntimeError("prepare the model before building its trainer")
        metrics = self.output / "metrics.jsonl"
        named: list[Callback] = [self.engine.checkpoints(self)]
        if self.rank == 0:  # one writer: the other ranks compute the same (all-reduced) numbers
            named += [MetricsCallback(metrics, self.ctx, self.config.log_interval),
                      LossPlotCallback(metrics, self.output / "loss.png", self.ctx, title=self.plot_title)]
        export = self.engine.export(self, tokenizer, export_extra or {}, export_files or {})
        every = [*named, *callbacks, *getattr(self.ctx, "callbacks", ()), export]
        return self.engine.trainer(self, objective, data, every)

    def fit(self, trainer: Trainer) -> TrainResult:
        """Train (resuming from the latest checkpoint), export, remove the checkpoints; the summary on rank 0."""
        start = time.perf_counter()
        state = trainer.fit()
        seconds = time.perf_counter() - start
        if self.rank != 0:
            return TrainResult(state, {"steps": float(state.step)})
        shutil.rmtree(self.output / "checkpoints", ignore_errors=True)
        losses = [r["loss"] for r in read_metrics(self.output / "metrics.jsonl")]
        summary = {
            "final_loss": final_loss(losses),
            "initial_loss": next((x for x in losses if x is not None), math.nan),
            "steps": float(state.step),
            "skipped_steps": float(state.skipped_steps),
            "tokens_seen": float(state.tokens_seen),
            "train_seconds": seconds,
            "world_size": float(self.world_size),
        }
        return TrainResult(state, summary)

    def barrier(self) -> None:
        """Wait for every rank (a no-op in one process)."""
        if self.world_size > 1:
            torch.distributed.barrier()


class HFExportCallback(Callback):
    """At the end of training, write the trained model as a stock transformers folder (`save_pretrained`).

    The model may hold training-only modules (FP8 / NVFP4 linears), wrappers (DDP) or shards (FSDP), so its full
    state dict is gathered (a collective: every rank calls it) and loaded into a plain model built on the meta device
    (building costs nothing) from `plain`: the class, config and generation config the model had before conversion; rank 0
    writes it, the tokenizer's files, and the `extra` modules' states and `files`, into a hidden folder renamed into
    place, so `model/` is always whole.
    """

    def __init__(self, folder: Path, model: nn.Module, plain: tuple[type, Any, Any], tokenizer: Any = None,
                 extra: Mapping[str, nn.Module] = {}, files: Mapping[str, Callable[[], str]] = {}) -> None:
        self.folder, self.model, self.plain, self.tokenizer = Path(folder), model, plain, tokenizer
        self.extra, self.files = extra, files

    def model_state(self) -> dict[str, torch.Tensor]:
        """The trained model's full state dict under its Hugging Face names, complete on rank 0 (a collective)."""
        return full_model_state(self.model)

    def on_train_end(self, trainer: Trainer) -> None:
        state = self.model_state()  # collectives under FSDP: every rank takes part
        extra = {name: full_model_state(module) for name, module in self.extra.items()}
        if trainer.rank != 0:
            return

        cls, config, generation_config = self.plain
        with torch.device("meta"):
            plain = cls(config)
        plain.load_state_dict(state, assign=True)
        plain.generation_config = generation_config
        tmp = self.folder.with_name(f".{self.folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(tmp)
        for name, tensors in extra.items():
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / name)
        for name, text in self.files.items():
            (tmp / name).write_text(text())
        shutil.rmtree(self.folder, ignore_errors=True)
        tmp.rename(self.folder)


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """A stage's summary as indented JSON (`sft.json`, `rl.json`, ...)."""
    Path(path).write_text(json.dumps(dict(summary), indent=2) + "\n")
