"""The pretrain stage: train a hybrid Mamba-2 / attention model from scratch on packed token windows.

Input "tokens" (a tokenize artifact): `train.bin`/`train.idx` (Megatron indexed dataset) and
`tokenizer/` (vocabulary size and special token ids come from it). Output:

    model/          `NemotronHForCausalLM.save_pretrained` folder (safetensors, config, generation config)
    metrics.jsonl   one record per step: loss, lr, grad_norm, tokens, tokens_per_s, skipped_steps
    loss.png        the training-loss curve

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

import numpy as np
import torch
from pydantic import Field

from factory.errors import InputError
from factory.model import ModelSpec, build_model, count_parameters
from factory.model.converters import apply_converters
from factory.stage import Artifact, StepContext
from factory.train.callbacks import LossPlotCallback, MetricsCallback, read_metrics
from factory.train.checkpoint import CheckpointCallback
from factory.train.config import TrainConfig
from factory.train.objective import CausalLMObjective
from factory.train.parallel import ParallelPlan, parallelize
from factory.train.trainer import Trainer

__all__ = ["Config", "KIND", "RESUMABLE", "run"]

KIND = "checkpoint"
RESUMABLE = True  # the executor keeps the staging folder (and its checkpoints) between attempts


class Config(TrainConfig):
    """Pretraining: a model spec plus the training-loop fields of `TrainConfig`. Defaults: tiny smoke run."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides (factory.model.PRESETS).")


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train `config.model` on `inputs["tokens"]/train`; write `model/`, `metrics.jsonl`, `loss.png`."""
    output = Path(output)
    if "tokens" not in inputs:
        raise InputError("pretrain needs an input named 'tokens' (a tokenize artifact)")
    tokens = inputs["tokens"]
    data, tokenizer = _read_tokens(Path(tokens.path), config.seq_len)
    ctx.log_dataset(
        name="tokens/train", uri=tokens.uri, digest=tokens.manifest.get("fingerprint", ""), context="training",
        profile={"samples": len(data), "tokens": data.num_tokens, "documents": data.num_documents, "seq_len": config.seq_len},
    )

    _seed_everything(config.seed)
    model_config = config.model.resolve()
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    model = build_model(model_config, len(tokenizer), **special)
    model = apply_converters(model, [])  # precision recipes (FP8, NVFP4) plug in here
    model = parallelize(model, ParallelPlan(device="cuda" if torch.cuda.is_available() else "cpu"))
    params = count_parameters(model)
    device = next(model.parameters()).device
    ctx.log.info("model_built", preset=config.model.preset, pattern=model_config.pattern, params=params,
                 vocab_size=len(tokenizer), samples=len(data), device=str(device))

    metrics_path = output / "metrics.jsonl"
    trainer = Trainer(
        CausalLMObjective(model), data, config, device=device,
        callbacks=[
            CheckpointCallback(output / "checkpoints", config.checkpoint_interval, config.keep_checkpoints),
            MetricsCallback(metrics_path, ctx, config.log_interval),
            LossPlotCallback(metrics_path, output / "loss.png", ctx),
        ],
    )
    start = time.perf_counter()
    state = trainer.fit()
    train_s = time.perf_counter() - start

    model_dir = output / "model"
    if model_dir.exists():  # a half-written folder from an attempt killed while saving
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
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
    }


def _read_tokens(folder: Path, seq_len: int):
    """The packed training windows and the tokenizer of a tokenize artifact; `InputError` names what is missing."""
    from transformers import PreTrainedTokenizerFast

    from factory.tokenize.indexed import PackedSequences

    for name in ("train.bin", "train.idx", "tokenizer"):
        if not (folder / name).exists():
            raise InputError(f"{folder / name}: missing from the tokens artifact (expected train.bin, train.idx, tokenizer/)")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder / "tokenizer")
    data = PackedSequences(folder / "train", seq_len)
    if len(data) == 0:
        raise InputError(
            f"{folder / 'train.bin'}: {data.num_tokens} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}; "
            "lower seq_len or add data"
        )
    return data, tokenizer


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
