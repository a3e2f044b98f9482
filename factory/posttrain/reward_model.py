"""The reward_model stage: a regression head on a base checkpoint's final token, trained to predict HelpSteer-style
attribute scores (helpfulness, correctness, coherence, complexity, verbosity; 0-4), as SteerLM / Nemotron-4 340B's
reward model. The preference stage (`judge: reward_model`) scores its samples with it.

Input: "model" (a checkpoint with its tokenizer: the backbone). Data: `data`, a JSONL file of scored responses,
one per line in HelpSteer2's format:

    {"prompt": "What is 2 + 3?", "response": "5", "helpfulness": 4, "correctness": 4, "coherence": 4,
     "complexity": 0, "verbosity": 0}

(`prompt` may also be a list of chat messages). `examples/reward_model/scored_responses.jsonl` is a tiny example
set (80 responses to 40 prompts), written by a seeded script from rules, not rated by people: each prompt asks to
repeat a number or add two digits and gets two responses, right or wrong, bare or padded with filler words. A right
answer scores correctness 4 (helpfulness 4 bare, 3 padded), a wrong one correctness 0 (helpfulness 1 bare, 0
padded); padding scores verbosity 4, complexity 1 and coherence 3 (bare: 0, 0 and 4). Real data: NVIDIA's HelpSteer2 files have exactly these fields.

Output:

    model/              the backbone (`save_pretrained`, tokenizer files), reward_head.safetensors, reward_head.json
                        (`factory.train.reward_model` documents the layout and loads it)
    metrics.jsonl       one record per step (loss = mean squared error per sample, averaged over attributes)
    reward_model.json   validation mean squared error and Pearson correlation per attribute, before and after

Training runs on the factory's trainer with `RewardRegressionObjective`; resumable through its checkpoints.

    from factory.posttrain import reward_model
    reward_model.run(reward_model.Config(data="scored.jsonl"), {"model": base}, out, StepContext("rm"))
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from factory.stage import Artifact, StepContext
from factory.train.config import TrainConfig

__all__ = ["Config", "run"]


class Config(TrainConfig):
    """Reward-model regression: the training-loop fields of `TrainConfig`, the scored data and the attributes."""

    data: str = Field(description="JSONL of scored responses (prompt, response and one number per attribute).",
                      json_schema_extra={"external_input": True})
    attributes: list[str] = Field(
        default_factory=lambda: ["helpfulness", "correctness", "coherence", "complexity", "verbosity"], min_length=1,
        description="The attributes the head predicts, in order (each a field of every data record).")
    valid_fraction: float = Field(0.2, ge=0, lt=1, description="Share of records held out for validation (every k-th).")
    seq_len: int = Field(512, gt=0, description="Most tokens of prompt + response; longer records are skipped and counted.")
    micro_batch_size: int = Field(8, gt=0, description="Records per forward/backward pass.")
    steps: int = Field(100, gt=0, description="Optimizer steps to train.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    warmup_steps: int = Field(5, ge=0, description="Steps of linear warmup.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled AdamW weight decay.")
    checkpoint_interval: int = Field(50, ge=0, description="Steps between resumable checkpoints (0 = none).")


def read_scored(path: Path, attributes: list[str]) -> list[dict]:
    """The records of a scored-responses JSONL; an `InputError` naming file and line for a bad one."""
    from factory.errors import InputError
    from factory.posttrain.records import json_objects

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (config field `data` of the reward_model step)")
    records = []
    for lineno, record in json_objects(path):
        prompt, response = record.get("prompt"), record.get("response")
        if not (isinstance(prompt, (str, list)) and prompt) or not isinstance(response, str):
            raise InputError(f"{path}:{lineno}: needs a non-empty `prompt` (text or chat messages) and a `response` (text)")
        bad = [a for a in attributes if not isinstance(record.get(a), (int, float)) or not math.isfinite(record[a])]
        if bad:
            raise InputError(f"{path}:{lineno}: attributes {bad} missing or not numbers (the step's `attributes` are {attributes})")
        records.append(record)
    if not records:
        raise InputError(f"{path}: no records; the reward model needs scored responses to train on")
    return records


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train the head (and the backbone) on `config.data`; write `model/`, `metrics.jsonl`, `reward_model.json`."""
    import torch
    from transformers import AutoTokenizer

    from factory.artifacts import Checkpoint
    from factory.errors import InputError
    from factory.model.checkpoints import load_model
    from factory.train.callbacks import MetricsCallback, read_metrics
    from factory.train.checkpoint import CheckpointCallback
    from factory.train.reward_model import RewardModel, RewardRegressionObjective, encode_exchange, save_reward_model
    from factory.train.trainer import Trainer

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model_dir = Checkpoint.of(inputs, "model").model_dir
    records = read_scored(Path(config.data), config.attributes)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    encoded, too_long = [], 0
    for r in records:
        ids = encode_exchange(tokenizer, r["prompt"], r["response"])
        if len(ids) > config.seq_len:
            too_long += 1
            continue
        encoded.append((ids, [float(r[a]) for a in config.attributes]))
    if not encoded:
        raise InputError(f"{config.data}: every record is longer than seq_len = {config.seq_len} tokens; raise seq_len")
    every = round(1 / config.valid_fraction) if config.valid_fraction > 0 else 0
    valid = [e for k, e in enumerate(encoded) if every and k % every == every - 1]
    train = [e for k, e in enumerate(encoded) if not (every and k % every == every - 1)]
    if not train:
        raise InputError(f"{config.data}: no training records after holding out valid_fraction = {config.valid_fraction}")

    torch.manual_seed(config.seed)
    model = RewardModel(load_model(model_dir), config.attributes)
    width = max(len(ids) for ids, _ in train)
    samples = [{"input_ids": torch.nn.functional.pad(torch.tensor(ids), (0, width - len(ids))),
                "length": torch.tensor(len(ids)), "scores": torch.tensor(scores)} for ids, scores in train]
    before = _validation(model, valid or train, config.attributes)
    metrics_path = output / "metrics.jsonl"
    callbacks = [CheckpointCallback(output / "checkpoints", config.checkpoint_interval, config.keep_checkpoints),
                 MetricsCallback(metrics_path, ctx, config.log_interval)]
    state = Trainer(RewardRegressionObjective(model), samples, config, callbacks=callbacks).fit()
    after = _validation(model, valid or train, config.attributes)
    save_reward_model(model, output / "model", tokenizer_from=model_dir)
    shutil.rmtree(output / "checkpoints", ignore_errors=True)
    losses = [r["loss"] for r in read_metrics(metrics_path) if r["loss"] is not None]
    result = {"records": float(len(records)), "train_records": float(len(train)), "valid_records": float(len(valid)),
              "too_long": float(too_long), "valid_mse_before": before["mse"], "valid_mse_after": after["mse"],
              "final_loss": losses[-1] if losses else float("nan"), "steps": float(state.step),
              **{f"valid_pearson_{a}": after["pearson"][a] for a in config.attributes}}
    (output / "reward_model.json").write_text(json.dumps({**result, "attributes": config.attributes,
                                                          "before": before, "after": after}, indent=2))
    ctx.log_metrics({k: v for k, v in result.items() if math.isfinite(v)})
    return result


def _validation(model, examples, attributes) -> dict:
    """Mean squared error over all attributes and Pearson correlation per attribute (NaN when constant)."""
    import torch

    predicted = model.score([ids for ids, _ in examples])  # (N, A)
    target = torch.tensor([scores for _, scores in examples])  # (N, A)
    pearson = {}
    for k, name in enumerate(attributes):
        p, t = predicted[:, k] - predicted[:, k].mean(), target[:, k] - target[:, k].mean()
        denom = float(p.norm() * t.norm())
        pearson[name] = float((p * t).sum()) / denom if denom > 0 else float("nan")
    return {"mse": float(((predicted - target) ** 2).mean()), "pearson": pearson}
