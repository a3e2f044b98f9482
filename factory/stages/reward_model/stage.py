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
                        (`factory.model.reward_head` documents the layout and loads it)
    metrics.jsonl       one record per step (loss = mean squared error per sample, averaged over attributes); loss.png
    reward_model.json   validation mean squared error and Pearson correlation per attribute, before and after

Training runs through the training-stage shell (`factory.train.shell`) with `RewardRegressionObjective`: the precision
converters on the backbone (the head stays in full precision), DDP / FSDP2 under torchrun, resumable checkpoints.

    from factory.stages import reward_model
    reward_model.run(reward_model.Config(data="scored.jsonl"), {"model": base}, out, StepContext("rm"))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoTokenizer

from factory.artifacts import Checkpoint
from factory.errors import InputError
from factory.jsonl import json_objects
from factory.model.checkpoints import load_model
from factory.model.reward_head import HEAD_CONFIG, HEAD_WEIGHTS, RewardModel, encode_exchange
from factory.stage import Artifact, StepContext
from factory.stages.reward_model.config import Config
from factory.train.objectives.reward_regression import RewardRegressionObjective
from factory.train.shell import TrainingShell, write_summary


def read_scored(path: Path, attributes: list[str]) -> list[dict]:
    """The records of a scored-responses JSONL; an `InputError` naming file and line for a bad one."""
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
    output = Path(output)
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

    with TrainingShell(config, output, ctx, plot_title="reward model loss (MSE)") as shell:
        backbone = shell.convert(load_model(model_dir))  # the head is not a converted layer: it stays in full precision
        model = RewardModel(backbone, config.attributes)
        width = max(len(ids) for ids, _ in train)
        samples = [{"input_ids": torch.nn.functional.pad(torch.tensor(ids), (0, width - len(ids))),
                    "length": torch.tensor(len(ids)), "scores": torch.tensor(scores)} for ids, scores in train]
        before = _validation(model, valid or train, config.attributes)
        trained = shell.parallelize(model)
        head = json.dumps({"attributes": list(config.attributes), "hidden_size": model.head.in_features,
                           "pooling": "last_token"}, indent=2)
        result = shell.fit(shell.trainer(RewardRegressionObjective(trained), samples, tokenizer=tokenizer,
                                         export_extra={HEAD_WEIGHTS: model.head}, export_files={HEAD_CONFIG: lambda: head}))
        after = _validation(model, valid or train, config.attributes)
    if shell.rank != 0:
        return result.summary
    summary = {**result.summary, "records": float(len(records)), "train_records": float(len(train)),
               "valid_records": float(len(valid)), "too_long": float(too_long), "valid_mse_before": before["mse"],
               "valid_mse_after": after["mse"], **{f"valid_pearson_{a}": after["pearson"][a] for a in config.attributes}}
    write_summary(output / "reward_model.json", {**summary, "attributes": config.attributes, "before": before, "after": after})
    return summary


def _validation(model, examples, attributes) -> dict:
    """Mean squared error over all attributes and Pearson correlation per attribute (NaN when constant)."""
    predicted = model.score([ids for ids, _ in examples])  # (N, A)
    target = torch.tensor([scores for _, scores in examples])  # (N, A)
    pearson = {}
    for k, name in enumerate(attributes):
        p, t = predicted[:, k] - predicted[:, k].mean(), target[:, k] - target[:, k].mean()
        denom = float(p.norm() * t.norm())
        pearson[name] = float((p * t).sum()) / denom if denom > 0 else float("nan")
    return {"mse": float(((predicted - target) ** 2).mean()), "pearson": pearson}
