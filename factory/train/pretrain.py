"""The pretrain stage: train a hybrid Mamba-2 / attention model from scratch on packed token windows.

Input "tokens" (a tokenize artifact): `train.bin`/`train.idx` (Megatron indexed dataset) and
`tokenizer/` (vocabulary size and special token ids come from it). Output:

    model/          `NemotronHForCausalLM.save_pretrained` folder (safetensors, config, generation config) with
                    the tokenizer's files (chat template included), so post-training reads it from here
    metrics.jsonl   one record per step: loss, lr, grad_norm, tokens, tokens_per_s, skipped_steps
    loss.png        the training-loss curve

Precision (`precision`): fp32, bf16 (autocast), fp8 or nvfp4 (bf16 autocast, and the blocks' linears
swapped by the `float8` / `nvfp4` model converter before training; master weights stay fp32). The
saved `model/` is always a plain transformers model with nn.Linear layers.

Data: without `blend`, the "train" windows in a seeded order. With `blend`, phases of dataset weights
(`BlendedSamples`): a dataset is a `PREFIX.bin/.idx` pair of the "tokens" input ("train", "hq", ...) or
"INPUT/PREFIX" in another input; the phase switches at its `until_fraction` of the run's tokens.

Distributed: under `torchrun` (WORLD_SIZE > 1) the stage joins the env:// process group itself (gloo
on CPU, NCCL on GPU), trains with DDP or FSDP2 (`data_parallel`), writes files on rank 0 only, and
barriers before returning; every rank resumes from the same checkpoint.

    torchrun --standalone --nproc-per-node 2 $(which factory) step pretrain examples/smoke.yaml

Resumable: while it runs, `checkpoints/step-NNNNNN/` in the staging folder hold everything needed to
continue (model, optimizer, schedule position, data position, RNG states); a restarted attempt
continues from the latest complete one and reproduces the uninterrupted run. They are removed once
`model/` is written, so the published artifact holds only the files above.

Run alone:

    from factory.stage import Artifact, StepContext
    from factory.train import pretrain
    pretrain.run(pretrain.Config(steps=300), {"tokens": Artifact(tokens_dir, {})}, out_dir, StepContext("pretrain"))
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from factory.errors import InputError
from factory.model import ModelSpec
from factory.stage import Artifact, StepContext, no_effect
from factory.train.config import TrainConfig

__all__ = ["Config", "KIND", "run"]

KIND = "checkpoint"  # resumable and distributed: flags of its entry in factory.kinds.KINDS

# Loading a spec imports this module for its Config, and a reused step needs nothing else, so the
# training machinery (torch, transformers) is imported inside `run`.


class Config(TrainConfig):
    """Pretraining: a model spec plus the training-loop fields of `TrainConfig`. Defaults: tiny smoke run.

    Under torchrun, `micro_batch_size` is per rank: the global batch is world size x micro_batch_size x
    grad_accum sequences.
    """

    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides (factory.model.PRESETS).")
    data_parallel: Literal["ddp", "fsdp"] = no_effect("ddp", "Data parallelism under torchrun: 'ddp' (replicated) or 'fsdp' (FSDP2 sharded).")
    compile: bool = no_effect(
        False, "torch.compile each block (changes float rounding only). On GPUs FP8 needs it: eager FP8 scaling "
        "costs more than the FP8 GEMMs save (bench/fp8_linear.py).")


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train `config.model` on the tokens inputs; write `model/`, `metrics.jsonl`, `loss.png` (rank 0 only)."""
    from factory.train.parallel import distributed

    with distributed() as (rank, world_size, device):
        return _train(config, inputs, Path(output), ctx, rank, world_size, device)


def _train(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext, rank: int,
           world_size: int, device: str) -> dict[str, float]:
    from factory.model import build_model, count_parameters
    from factory.model.converters import apply_converters, training_converters
    from factory.train.callbacks import HFExportCallback, LossPlotCallback, MetricsCallback, read_metrics
    from factory.train.checkpoint import CheckpointCallback
    from factory.train.objective import CausalLMObjective
    from factory.train.parallel import ParallelPlan, parallelize
    from factory.tokens import load_tokenizer
    from factory.train.sampler import BlendedSamples
    from factory.train.trainer import Trainer

    if "tokens" not in inputs:
        raise InputError("pretrain needs an input named 'tokens' (a tokenize artifact)")
    tokens = inputs["tokens"]
    datasets = {name: _read_dataset(inputs, name, config.seq_len) for name in config.blend_datasets}
    tokenizer = load_tokenizer(tokens.path)
    if config.blend is None:
        data = datasets["train"]
    else:
        total = config.steps * config.micro_batch_size * config.grad_accum * world_size
        data = BlendedSamples(datasets, config.blend, total, config.seed)
    if rank == 0:
        for name, ds in datasets.items():
            ctx.log_dataset(
                name=f"tokens/{name}", uri=tokens.uri, digest=tokens.manifest.get("fingerprint", ""), context="training",
                profile={"samples": len(ds), "tokens": ds.num_tokens, "documents": ds.num_documents, "seq_len": config.seq_len},
            )

    _seed_everything(config.seed)
    model_config = config.model.resolve()
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    model = build_model(model_config, len(tokenizer), **special)
    model = apply_converters(model, training_converters(config.precision, config.precision_options,
                                                         config.activation_checkpointing))
    model = parallelize(model, ParallelPlan(data_parallel=config.data_parallel, compile=config.compile, device=device))  # type: ignore[arg-type]
    params = count_parameters(build_model(model_config, len(tokenizer), device="meta"))
    ctx.log.info("model_built", preset=config.model.preset, pattern=model_config.pattern, params=params,
                 precision=config.precision, vocab_size=len(tokenizer), datasets=list(datasets), device=device,
                 rank=rank, world_size=world_size)

    metrics_path = output / "metrics.jsonl"
    callbacks = [CheckpointCallback(output / "checkpoints", config.checkpoint_interval, config.keep_checkpoints)]
    if rank == 0:  # one writer: the other ranks compute the same (all-reduced) numbers
        callbacks += [MetricsCallback(metrics_path, ctx, config.log_interval),
                      LossPlotCallback(metrics_path, output / "loss.png", ctx)]
    # A freshly built model holds plain nn.Linear layers whatever the training precision, so `model/`
    # is a stock transformers checkpoint (same parameter names: the precision linears share them).
    callbacks.append(HFExportCallback(output / "model",
                                      lambda: build_model(model_config, len(tokenizer), device="meta", **special),
                                      tokenizer=tokenizer))
    trainer = Trainer(CausalLMObjective(model), data, config, device=device, callbacks=callbacks)
    start = time.perf_counter()
    state = trainer.fit()
    train_s = time.perf_counter() - start
    if rank != 0:
        return {"steps": float(state.step)}
    shutil.rmtree(output / "checkpoints", ignore_errors=True)

    losses = [r["loss"] for r in read_metrics(metrics_path) if r["loss"] is not None]
    tail = losses[-min(10, len(losses)):] if losses else [math.nan]
    return {
        "final_loss": sum(tail) / len(tail),  # mean of the last 10 steps: less noisy than the last one
        "initial_loss": losses[0] if losses else math.nan,
        "tokens_seen": float(state.tokens_seen),
        "params": float(params),
        "steps": float(state.step),
        "skipped_steps": float(state.skipped_steps),
        "train_seconds": train_s,
        "world_size": float(world_size),
    }


def _read_dataset(inputs: Mapping[str, Artifact], name: str, seq_len: int):
    """Packed windows of dataset `name`: "PREFIX" is `PREFIX.bin/.idx` in the "tokens" input, "INPUT/PREFIX"
    the same in input INPUT (a stage may receive several token artifacts)."""
    from factory.tokens import PackedSequences

    input_name, _, prefix = name.rpartition("/")
    input_name = input_name or "tokens"
    if input_name not in inputs:
        raise InputError(f"blend: dataset {name!r} names input {input_name!r}, not among the inputs {sorted(inputs)}")
    folder = Path(inputs[input_name].path)
    for suffix in (".bin", ".idx"):
        if not (folder / f"{prefix}{suffix}").exists():
            raise InputError(f"{folder / (prefix + suffix)}: missing from the tokens artifact (expected {prefix}.bin, {prefix}.idx, tokenizer/)")
    data = PackedSequences(folder / prefix, seq_len)
    if len(data) == 0:
        raise InputError(
            f"{folder / (prefix + '.bin')}: {data.num_tokens} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}; "
            "lower seq_len or add data"
        )
    return data


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
