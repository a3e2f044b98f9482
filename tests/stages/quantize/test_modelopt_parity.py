"""The quantize stage's Model Optimizer folders against Model Optimizer's own export (optional: needs nvidia-modelopt,
whose whole calibrate-and-export path runs on CPU): for fp8, nvfp4 and mixed, on the trained tiny NemotronH and on
tiny Llama, Qwen2, Qwen3 and Mistral models, every file, every config field and every tensor's name, dtype, shape
and bytes are the same. Model Optimizer gets the formats per linear that the stage chose and the stage's own
calibration windows, in the same batches."""

from __future__ import annotations

import json

import pytest

from factory.artifacts import Tokens
from factory.stage import StepContext
from tests.builders import publish, random_sentences, tokens
from tests.builders.architectures import chat_tokenizer, model_folder_of
from tests.stages.quantize.modelopt_reference import folder_diff, modelopt_export

pytest.importorskip("modelopt.torch.export")

VARIANTS = ("fp8", "nvfp4", "mixed")
LLAMA_FAMILY = ("llama", "qwen2", "qwen3", "mistral")


def _config(**extra):
    from factory.stages.quantize import stage

    # loose gates: the point is the format; bits_budget 6 gives the mixed variant NVFP4 and FP8 linears
    return stage.Config(variants=list(VARIANTS), calibration_samples=16, eval_samples=8, seq_len=32, tasks=[],
                        compressed_tensors=False, bits_budget=6.0, max_ppl_increase={v: 10.0 for v in VARIANTS}, **extra)


def _quantize_and_diff(model, toks, root) -> dict[str, list[str]]:
    from factory.stages.quantize import stage

    config = _config()
    out = root / "quantized"
    stage.run(config, {"model": model, "tokens": toks}, out, StepContext("quantize"))
    report = json.loads((out / "quantize.json").read_text())
    windows = Tokens.of({"tokens": toks}, "tokens").windows(config.calibration_split, config.seq_len, config.calibration_samples)
    diffs = {}
    for variant in VARIANTS:
        formats = report["variants"][variant]["formats"]
        assert variant != "mixed" or {"fp8", "nvfp4"} <= set(formats.values()), formats
        reference = modelopt_export(model.path / "model", windows, formats, config.kv_cache_fp8, root / f"modelopt-{variant}")
        diffs[variant] = folder_diff(out / variant, reference)
    return diffs


def test_nemotron_h_exports_are_model_optimizers_own(q_model, tokens, tmp_path):
    diffs = _quantize_and_diff(q_model, tokens, tmp_path)
    assert diffs == {v: [] for v in VARIANTS}


@pytest.fixture(scope="module")
def llama_tokens(tmp_path_factory):
    """Token data written with the tiny Llama-family models' tokenizer (tests/builders/architectures.py)."""
    texts = random_sentences(400, seed=5)
    return tokens(tmp_path_factory.mktemp("llama-tokens"), chat_tokenizer(), {"train": texts[:360], "valid": texts[360:]})


@pytest.mark.parametrize("arch", LLAMA_FAMILY)
def test_llama_family_exports_are_model_optimizers_own(arch, llama_tokens, tmp_path):
    model_folder_of(arch, tmp_path / "model" / "model")
    model = publish(tmp_path / "model", "import_model", "checkpoint")
    diffs = _quantize_and_diff(model, llama_tokens, tmp_path)
    assert diffs == {v: [] for v in VARIANTS}
    header = json.loads((tmp_path / "quantized" / "nvfp4" / "config.json").read_text())
    assert header["architectures"] == [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                                        "mistral": "MistralForCausalLM"}[arch]]

