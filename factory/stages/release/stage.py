"""The release stage's `run`: the Hugging Face folder, its model card, its quantized variants (optional input
"quantized": one subfolder and one card section each, `factory.stages.release.variants`), and the optional push."""

from __future__ import annotations

import math

from collections.abc import Mapping
from pathlib import Path

from factory.artifacts import Checkpoint, Evaluation, Quantized, Tokens
from factory.stage import Artifact, StepContext
from factory.stages.release.config import Config
from factory.stages.release.folder import (
    copy_tokenizer,
    write_bf16_weights,
    write_generation_config,
    write_model_config,
)
from factory.stages.release.hub import push_to_hub
from factory.stages.release.model_card import model_card
from factory.stages.release.variants import (
    check_variants_match,
    copy_variants,
    variant_sections,
)


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Write the Hugging Face folder into `output`; push it when asked and possible."""
    model_dir = Checkpoint.of(inputs, "model").model_dir  # each input checked as its kind, one line if not
    Tokens.of(inputs, "tokens")
    evaluation = Evaluation.of(inputs, "evaluation").results()
    model_art, tokens_art, eval_art = inputs["model"], inputs["tokens"], inputs["evaluation"]
    quantized = Quantized.of(inputs, "quantized") if inputs.get("quantized") is not None else None
    report = quantized.report() if quantized else None
    if quantized:
        check_variants_match(model_art, inputs["quantized"])

    n_bytes = write_bf16_weights(model_dir, output)
    tokenizer = copy_tokenizer(tokens_art.path, output)
    model_config = write_model_config(model_dir, output, tokenizer)
    write_generation_config(output, tokenizer, config)

    card = model_card(config, model_art, tokens_art, eval_art, evaluation, model_config,
                      chat=bool(getattr(tokenizer, "chat_template", None)), params=_parameter_count(output))
    sizes = {}
    if report:
        sizes = copy_variants(quantized.path, report, output, tokens_art.path, config)
        card = card.rstrip("\n") + "\n\n" + "\n".join(variant_sections(report, sizes, n_bytes, config))
    (output / "README.md").write_text(card)
    ctx.log_artifact(output / "README.md")
    ctx.log.info("release_written", files=sorted(p.name for p in output.iterdir()), weight_bytes=n_bytes,
                 variants={k: int(v) for k, v in sizes.items()})

    pushed = push_to_hub(output, config, ctx)
    return {"weight_bytes": float(n_bytes), "pushed": float(pushed),
            **{f"{name.replace('-', '_')}_weight_bytes": float(b) for name, b in sizes.items()}}


def _parameter_count(folder: Path) -> int:
    """Parameters in the released weights, read from the safetensors headers (tied weights are stored once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():
                total += math.prod(f.get_slice(name).get_shape())
    return total
