"""The release stage's `run`: the Hugging Face folder, its model card, and the optional push."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from factory.errors import InputError
from factory.release.config import Config
from factory.release.folder import copy_tokenizer, copy_weights, write_generation_config, write_model_config
from factory.release.hub import push_to_hub
from factory.release.model_card import model_card
from factory.stage import Artifact, StepContext

__all__ = ["KIND", "run"]

KIND = "release"


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Write the Hugging Face folder into `output`; push it when asked and possible."""
    model_art, tokens_art, eval_art = (_require(inputs, n) for n in ("model", "tokens", "evaluation"))

    n_bytes = copy_weights(model_art.path / "model", output)
    tokenizer = copy_tokenizer(tokens_art.path, output)
    model_config = write_model_config(model_art.path / "model", output, tokenizer)
    write_generation_config(output, tokenizer, config)

    eval_path = eval_art.path / "eval.json"
    if not eval_path.is_file():
        raise InputError(f"{eval_path}: the evaluation artifact has no eval.json")
    evaluation = json.loads(eval_path.read_text())
    card = model_card(config, model_art, tokens_art, eval_art, evaluation, model_config)
    (output / "README.md").write_text(card)
    ctx.log_artifact(output / "README.md")
    ctx.log.info("release_written", files=sorted(p.name for p in output.iterdir()), weight_bytes=n_bytes)

    pushed = push_to_hub(output, config, ctx)
    return {"weight_bytes": float(n_bytes), "pushed": float(pushed)}


def _require(inputs: Mapping[str, Artifact], name: str) -> Artifact:
    if name not in inputs:
        raise InputError(f"release needs an input named {name!r}; got {sorted(inputs)}")
    return inputs[name]
