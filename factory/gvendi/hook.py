"""G-Vendi as an output hook of the executor (`factory.steps.OUTPUT_HOOKS`): every dataset artifact a step is about
to publish gets `gvendi.json` and the metrics `gvendi` and `gvendi_examples`, when the spec sets `gvendi:`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from factory.gvendi.config import DATASET_KINDS, GVendiSettings
from factory.logs import get_logger
from factory.stage import Artifact

__all__ = ["measure_output"]

log = get_logger("factory.gvendi")


def measure_output(output_kind: str, folder: Path, inputs: Mapping[str, Artifact], settings: GVendiSettings | None) -> dict[str, float]:
    """The hook, run on a step's staging folder before it is published: for a dataset artifact, write `gvendi.json`
    into it and return the metrics {"gvendi", "gvendi_examples"} (for the step's MLflow run and its manifest).
    Nothing for other kinds or when `settings` is None.

    The proxy is `settings.model_dir` when set; else a checkpoint input of the step (`model/`) whose tokenizer
    is found (a tokens input's `tokenizer/`, or tokenizer.json in the model folder); else a fresh one.
    """
    if settings is None or output_kind not in DATASET_KINDS:
        return {}
    # Every process that runs the executor imports this hook, and most steps measure nothing: torch and
    # transformers load only when a dataset is measured.
    from factory.gvendi.measure import measure_artifact

    settings = _with_checkpoint_input(settings, inputs)
    report = measure_artifact(folder, output_kind, settings)
    (Path(folder) / "gvendi.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if "gvendi" not in report:
        log.info("gvendi.skipped", reason="no usable examples", skipped=report["skipped"])
        return {}
    log.info("gvendi", score=round(report["gvendi"], 4), examples=report["examples"], proxy=report["proxy"])
    return {"gvendi": report["gvendi"], "gvendi_examples": float(report["examples"])}


def _with_checkpoint_input(settings: GVendiSettings, inputs: Mapping[str, Artifact]) -> GVendiSettings:
    if settings.model_dir is not None:
        return settings
    kinds = {name: (art.manifest or {}).get("kind") for name, art in inputs.items()}
    tokenizers = [Path(inputs[n].path) / "tokenizer" for n, k in kinds.items() if k == "tokens"]
    for name, kind in kinds.items():
        model_dir = Path(inputs[name].path) / "model"
        if kind != "checkpoint" or not (model_dir / "config.json").is_file():
            continue
        found = ([Path(settings.tokenizer_dir)] if settings.tokenizer_dir else []) + tokenizers + [model_dir]
        tokenizer = next((t for t in found if (t / "tokenizer.json").is_file()), None)
        if tokenizer is not None:
            return settings.model_copy(update={"model_dir": str(model_dir), "tokenizer_dir": str(tokenizer)})
        log.info("gvendi.checkpoint_without_tokenizer", input=name, model_dir=str(model_dir))
    return settings
