"""The card's decode-speed lines: quoted only from an evaluate step's measured throughput record, naming its machine;
against the transformer only where that step measured one; nothing otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.generate.decode_speed import machine_line
from factory.stages.release.config import Config
from factory.stages.release.model_card import model_card
from tests.builders import publish

MACHINE = {"device": "cpu", "cpu": "Test CPU 9000", "gpu": None, "torch_threads": 1, "torch": "2.13.0"}


def cell(model: str, context: int, batch: int, fast: float, forward: float) -> dict:
    return {"model": model, "context": context, "batch": batch, "decoder_tokens_per_s": fast,
            "forward_tokens_per_s": forward, "state_bytes": 1000}


RECORD = {"machine": MACHINE, "parameters": {"this model": 400_000, "transformer": 400_100},
          "cells": [cell("this model", 1024, 1, 300.0, 100.0), cell("transformer", 1024, 1, 200.0, 90.0),
                    cell("this model", 8192, 1, 290.0, 80.0), cell("transformer", 8192, 1, 100.0, 50.0)],
          "generation": None}
SPEED = {"decode_tokens_per_s@1024": 300.0, "transformer_decode_tokens_per_s@1024": 200.0, "speed_vs_transformer@1024": 1.5}


@pytest.fixture
def evaluation(upstream):
    return json.loads((upstream["evaluation"].path / "eval.json").read_text())


def card(upstream, evaluation, eval_art=None) -> str:
    model_config = json.loads((upstream["model"].path / "model" / "config.json").read_text())
    return model_card(Config(model_name="m"), upstream["model"], upstream["tokens"], eval_art or upstream["evaluation"],
                      evaluation, model_config)


def section(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("## Decode speed")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    return lines[start:end]


def test_without_a_measured_record_the_card_says_nothing_of_speed(upstream, evaluation):
    evaluation["all_metrics"] = {**evaluation.get("all_metrics", {}), **SPEED}  # figures without their machine
    text = card(upstream, evaluation)
    assert "## Decode speed" not in text
    assert "tokens_per_s" not in text and "transformer" not in text.lower().replace("transformers", "")
    evaluation["throughput"] = {**RECORD, "machine": None}  # a record without its machine is not quoted either
    assert "## Decode speed" not in card(upstream, evaluation)


def test_a_measured_record_is_quoted_with_its_machine_and_the_ratio(upstream, evaluation):
    evaluation["throughput"] = RECORD
    lines = section(card(upstream, evaluation))
    stage = upstream["evaluation"].manifest["stage"]
    assert f"Measured by the evaluate step `{stage}` on {machine_line(MACHINE)}" in lines[2]
    assert "CPU Test CPU 9000 (torch 2.13.0, 1 thread)" in lines[2] and "equal parameters" in lines[2]
    assert lines[4:] == ["| context | batch | tokens/s | transformer tokens/s | speed against the transformer |",
                         "|---|---|---|---|---|", "| 1024 | 1 | 300.0 | 200.0 | 1.50x |", "| 8192 | 1 | 290.0 | 100.0 | 2.90x |",
                         ""]


def test_without_a_measured_transformer_nothing_is_said_against_it(upstream, evaluation):
    evaluation["throughput"] = {**RECORD, "parameters": {"this model": 400_000},
                                "cells": [c for c in RECORD["cells"] if c["model"] == "this model"]}
    lines = section(card(upstream, evaluation))
    assert not [line for line in lines if "transformer" in line.replace("transformers", "")]
    assert lines[4:7] == ["| context | batch | tokens/s |", "|---|---|---|", "| 1024 | 1 | 300.0 |"]


def test_an_earlier_evaluation_of_the_same_model_is_quoted_from_its_folder(upstream, evaluation, tmp_path: Path):
    folder = tmp_path / "eval_speed"
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({"metrics": {}, "all_metrics": SPEED, "throughput": RECORD}))
    measured = publish(folder, "eval_speed", "evaluation", inputs={"model": upstream["model"]}, metrics=SPEED,
                       stage_kind="evaluate")
    measured.manifest["uri"] = str(folder)  # a local store: the card can read its eval.json
    released_art = publish(tmp_path / "eval_final", "eval_final", "evaluation",
                           inputs={"model": upstream["model"], "baseline": measured}, stage_kind="evaluate")
    lines = section(card(upstream, evaluation, released_art))
    assert "Measured by the evaluate step `eval_speed` on CPU Test CPU 9000" in lines[2]
    # on a store the card cannot read, the same lineage gives no figure
    measured.manifest["uri"] = "s3://factory-test/eval_speed/x"
    remote = publish(tmp_path / "eval_remote", "eval_final", "evaluation",
                     inputs={"model": upstream["model"], "baseline": measured}, stage_kind="evaluate")
    assert "## Decode speed" not in card(upstream, evaluation, remote)
