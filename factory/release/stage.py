"""The release stage's `run`: the Hugging Face folder, its model card, and the optional push."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from factory.artifacts import Checkpoint, Evaluation, Tokens
from factory.release.config import Config
from factory.release.folder import copy_tokenizer, copy_weights, write_generation_config, write_model_config
from factory.release.hub import push_to_hub
from factory.release.model_card import model_card
from factory.stage import Artifact, StepContext

__all__ = ["KIND", "run"]

KIND = "release"


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Write the Hugging Face folder into `output`; push it when asked and possible."""
    model_dir = Checkpoint.of(inputs, "model").model_dir  # each input checked as its kind, one line if not
    Tokens.of(inputs, "tokens")
    evaluation = Evaluation.of(inputs, "evaluation").results()
    model_art, tokens_art, eval_art = inputs["model"], inputs["tokens"], inputs["evaluation"]

    n_bytes = copy_weights(model_dir, output)
    tokenizer = copy_tokenizer(tokens_art.path, output)
    model_config = write_model_config(model_dir, output, tokenizer)
    write_generation_config(output, tokenizer, config)

    card = model_card(config, model_art, tokens_art, eval_art, evaluation, model_config,
                      chat=bool(getattr(tokenizer, "chat_template", None)))
    (output / "README.md").write_text(card)
    ctx.log_artifact(output / "README.md")
    ctx.log.info("release_written", files=sorted(p.name for p in output.iterdir()), weight_bytes=n_bytes)

    pushed = push_to_hub(output, config, ctx)
    return {"weight_bytes": float(n_bytes), "pushed": float(pushed)}

