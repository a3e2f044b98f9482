"""Every kind that trains goes through the training-stage shell and gets what it offers: FP8 and NVFP4 training
(the converted layers really train, and their loss tracks BF16's within pretrain's parity bounds), the named outputs
(model/, metrics.jsonl, loss.png), one `final_loss`, and a stock transformers model exported whatever the precision."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from factory.kinds import KINDS
from factory.train.config import Loop, Parallelism, Precision
from tests.train.trainer_kinds import TRAINERS, run_kind

# pretrain's parity on the tiny preset (tests/precision/test_precision_training.py): FP8 within 2 %, NVFP4 within 8 %
BOUND = {"fp8": 0.02, "nvfp4": 0.08}


@pytest.fixture(scope="module")
def inputs(trainer_inputs):
    return trainer_inputs


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    """Every trainer kind in bf16, fp8 and nvfp4, from the same inputs and seed."""
    return {(kind, precision): run_kind(kind, {"precision": precision}, inputs, tmp_path_factory.mktemp(f"{kind}-{precision}"))
            for kind in TRAINERS for precision in ("bf16", "fp8", "nvfp4")}


def test_every_trainer_kind_is_built_from_the_shells_parts():
    for kind in TRAINERS:
        config = KINDS[kind].config
        assert issubclass(config, Loop) and issubclass(config, Precision), kind
        # a kind that can run under torchrun says so in the registry, and only such a kind takes the parallel part
        assert issubclass(config, Parallelism) == KINDS[kind].distributed, kind


@pytest.mark.parametrize("kind", TRAINERS)
def test_fp8_and_nvfp4_train_every_kind_and_track_bf16(runs, kind):
    bf16 = runs[kind, "bf16"]
    assert "error" not in bf16, bf16.get("error")
    assert bf16["low_precision"] == {} and bf16["converters"] == []
    for precision, layer in (("fp8", "Float8Linear"), ("nvfp4", "NVFP4Linear")):
        run = runs[kind, precision]
        assert "error" not in run, run.get("error")
        # the converter ran on the trained model: its blocks' linears are low precision (first and last kept BF16)
        assert run["converters"] == ["precision"] and run["low_precision"].get(layer, 0) >= 4, run["low_precision"]
        # same weights, same sequence, another format: the model's loss moves, within pretrain's parity bound
        assert run["start_nll"] != bf16["start_nll"]
        assert abs(run["start_nll"] - bf16["start_nll"]) < BOUND[precision] * bf16["start_nll"]
        # rl's loss is a policy gradient around 0, and both rl's and opd's are on completions each precision samples itself
        if kind not in ("rl", "opd"):
            final, reference = run["summary"]["final_loss"], bf16["summary"]["final_loss"]
            assert abs(final - reference) < BOUND[precision] * abs(reference), (final, reference)
        assert run["weights"] != bf16["weights"]  # trained in its own format


@pytest.mark.parametrize("kind", TRAINERS)
def test_every_kind_reports_one_final_loss_and_exports_a_stock_model(runs, kind, tmp_path_factory):
    run = runs[kind, "nvfp4"]
    losses = [s["loss"] for s in run["steps"]]
    tail = losses[-10:]
    assert run["summary"]["final_loss"] == pytest.approx(sum(tail) / len(tail), rel=1e-12)  # one definition
    assert run["summary"]["steps"] == len(losses) and run["summary"]["initial_loss"] == losses[0]
    assert {"model", "metrics.jsonl", "loss.png"} <= set(run["files"]) and "checkpoints" not in run["files"]


def test_exported_models_load_in_stock_transformers_with_plain_linears(inputs, tmp_path):
    run = run_kind("sft", {"precision": "nvfp4"}, inputs, tmp_path / "sft")
    assert "error" not in run
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sft" / "model")
    assert {type(m).__name__ for m in model.modules()} >= {"Linear"}
    assert not {"Float8Linear", "NVFP4Linear"} & {type(m).__name__ for m in model.modules()}
