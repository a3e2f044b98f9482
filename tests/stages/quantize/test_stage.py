"""The quantize stage on a trained tiny NemotronH: exports checked against vLLM's ModelOpt loaders, gates read
from the exported files, clean failures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from factory.errors import InputError
from factory.stage import StepContext
from tests.builders import grammar_sentences

# What vLLM's ModelOpt loaders read (vllm/model_executor/layers/quantization/modelopt.py):
# - the config comes from config.json's quantization_config when there is one (else hf_quant_config.json
#   {"quantization": {"quant_algo", "kv_cache_quant_algo", "group_size", "exclude_modules"}}): quant_method
#   "modelopt", quant_algo one of FP8 / NVFP4 / MIXED_PRECISION (whose config requires "quantized_layers" there),
#   "ignore" (exclude_modules), "kv_cache_scheme" {"type": "float", "num_bits": 8} for an FP8 KV cache;
# - ModelOptFp8LinearMethod.create_weights: weight float8_e4m3fn [out, in]; weight_scale and input_scale fp32
#   per-tensor (PerTensorScaleParameter: one scalar per fused shard);
# - ModelOptNvFp4LinearMethod.create_weights: weight uint8 [out, in // 2]; weight_scale float8_e4m3fn
#   [out, in // group_size]; weight_scale_2 and input_scale fp32 per-tensor;
# - ModelOptKVCacheMethod: k_scale / v_scale fp32 scalars on the attention layer (checkpoint names
#   <layer>.k_proj.k_scale / .v_proj.v_scale, remapped by vLLM to attn.k_scale / attn.v_scale);
# - a module in exclude_modules loads unquantized (UnquantizedLinearMethod): a plain weight, no scales.
FP8_LINEAR = {"weight": ("F8_E4M3", lambda o, i: [o, i]), "weight_scale": ("F32", lambda o, i: []), "input_scale": ("F32", lambda o, i: [])}
NVFP4_LINEAR = {"weight": ("U8", lambda o, i: [o, i // 2]), "weight_scale": ("F8_E4M3", lambda o, i: [o, i // 16]),
                "weight_scale_2": ("F32", lambda o, i: []), "input_scale": ("F32", lambda o, i: [])}


def _cloze(folder):
    """Cloze items from the tiny corpus' grammar: after "The <adj> <noun> <verb>" comes " a" (learnable), after
    "... <verb> a" some noun (near chance)."""
    rows = []
    for i, s in enumerate(grammar_sentences(40, seed=11)):
        words = s.split()
        cut = 4 if i % 2 == 0 else 5
        rows.append({"id": f"c{i}", "context": " ".join(words[:cut]), "target": " " + words[cut]})
    path = folder / "tiny_cloze.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, q_model, tokens):
    from factory.stages.quantize import stage

    out = tmp_path_factory.mktemp("quantized")
    cloze = _cloze(tmp_path_factory.mktemp("cloze"))
    cfg = stage.Config(variants=["fp8", "nvfp4", "mixed"], calibration_samples=16, eval_samples=16, seq_len=32, bits_budget=6.0,
                       tasks=[], task_files=[str(cloze)], task_seq_len=32)
    metrics = stage.run(cfg, {"model": q_model, "tokens": tokens}, out, StepContext("quantize"))
    return out, metrics


def module_name(name: str) -> str:
    """A NemotronH checkpoint name (`backbone.*`, NVIDIA's) back to its module name (`model.*`), as transformers and
    vLLM map it."""
    return "model." + name[len("backbone."):] if name.startswith("backbone.") else name


def _header(path):
    import struct

    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return {module_name(k): v for k, v in json.loads(raw[8 : 8 + n]).items() if k != "__metadata__"}


@pytest.mark.parametrize("variant", ["fp8", "nvfp4", "mixed"])
def test_export_has_every_name_dtype_and_shape_vllm_reads(quantized, q_model, variant):
    out, _ = quantized
    folder = out / variant
    hq = json.loads((folder / "hf_quant_config.json").read_text())
    section = hq["quantization"]
    assert hq["producer"]["name"] == "modelopt"
    assert section["quant_algo"] == {"fp8": "FP8", "nvfp4": "NVFP4", "mixed": "MIXED_PRECISION"}[variant]
    assert section["kv_cache_quant_algo"] == "FP8"
    assert variant != "nvfp4" or section["group_size"] == 16
    assert all(layer.get("group_size", 16) == 16 for layer in section.get("quantized_layers", {}).values())
    config = json.loads((folder / "config.json").read_text())
    qc = config["quantization_config"]
    assert qc["quant_method"] == "modelopt" and qc["quant_algo"] == section["quant_algo"]
    assert qc["kv_cache_scheme"] == {"dynamic": False, "num_bits": 8, "type": "float"}
    if variant == "mixed":  # vLLM's mixed-precision config reads the per-layer formats from config.json
        assert qc["quantized_layers"] == section["quantized_layers"] and section["quantized_layers"]
        assert "lm_head" not in section["quantized_layers"] and "exclude_modules" not in section
    else:
        assert qc["ignore"] == section["exclude_modules"] and "lm_head" in section["exclude_modules"]

    header = _header(folder / "model.safetensors")
    ref = json.loads((q_model.path / "model" / "config.json").read_text())
    from transformers import AutoModelForCausalLM

    bf16 = AutoModelForCausalLM.from_pretrained(q_model.path / "model")
    linears = {n: m for n, m in bf16.named_modules() if isinstance(m, torch.nn.Linear)}
    per_layer = {module_name(k): v for k, v in section.get("quantized_layers", {}).items()}
    excluded = {module_name(n) for n in section.get("exclude_modules", [])} | ({n for n in linears if n not in per_layer}
                                                                              if variant == "mixed" else set())
    assert all(n.startswith(("backbone.", "lm_head")) for n in [*section.get("exclude_modules", []), *section.get("quantized_layers", [])])
    quantized_names = set()
    for name, lin in linears.items():
        o, i = lin.out_features, lin.in_features
        if name in excluded:
            assert header[f"{name}.weight"]["dtype"] == "BF16" and header[f"{name}.weight"]["shape"] == [o, i]
            assert f"{name}.weight_scale" not in header and f"{name}.input_scale" not in header
            continue
        quantized_names.add(name)
        algo = per_layer[name]["quant_algo"] if variant == "mixed" else section["quant_algo"]
        spec = FP8_LINEAR if algo == "FP8" else NVFP4_LINEAR
        for suffix, (dtype, shape) in spec.items():
            entry = header[f"{name}.{suffix}"]
            assert (entry["dtype"], entry["shape"]) == (dtype, shape(o, i)), f"{name}.{suffix}"
        assert (algo == "FP8") == (f"{name}.weight_scale_2" not in header)
    assert quantized_names, "nothing was quantized"
    for i, kind in enumerate(ref["layers_block_type"]):
        if kind == "full_attention":
            for proj, scale in (("k_proj", "k_scale"), ("v_proj", "v_scale")):
                assert (header[f"model.layers.{i}.mixer.{proj}.{scale}"]["dtype"], header[f"model.layers.{i}.mixer.{proj}.{scale}"]["shape"]) == ("F32", [])
            # q, k and v share one format
            fmts = {header.get(f"model.layers.{i}.mixer.{p}.weight_scale_2", {}).get("dtype", header[f"model.layers.{i}.mixer.{p}.weight"]["dtype"])
                    for p in ("q_proj", "k_proj", "v_proj")}
            assert len(fmts) == 1
        if kind == "linear_attention":
            assert header[f"model.layers.{i}.mixer.conv1d.weight"]["dtype"] == "BF16"
    assert header["model.embeddings.weight"]["dtype"] == "BF16"
    raw_names = set(json.loads((folder / "model.safetensors").read_bytes()[8:8 + int.from_bytes((folder / "model.safetensors").read_bytes()[:8], "little")]))
    assert "backbone.embeddings.weight" in raw_names and "model.embeddings.weight" not in raw_names
    # every tensor of the model is there, under its own name or as a quantized linear's weight
    names = {k.rsplit(".", 1)[0] for k in header}
    assert {k.rsplit(".", 1)[0] for k in bf16.state_dict()} <= names


def test_gates_pass_and_are_measured_on_the_exported_files(quantized, tokens):
    from factory.artifacts import Tokens
    from factory.model.checkpoints import lm_loss
    from factory.stages.quantize.modelopt_format import load_modelopt

    out, metrics = quantized
    report = json.loads((out / "quantize.json").read_text())
    assert 0 <= metrics["fp8_ppl_increase"] <= 0.01 and metrics["nvfp4_ppl_increase"] <= 0.03
    assert metrics["fp8_effective_bits"] == 8 and metrics["nvfp4_effective_bits"] == 4.5
    assert 4.5 <= metrics["mixed_effective_bits"] <= 6.0
    windows = Tokens.of({"tokens": tokens}, "tokens").windows("valid", 32, 16)
    for variant in ("fp8", "nvfp4"):
        ppl = math.exp(lm_loss(load_modelopt(out / variant), windows))
        assert ppl == pytest.approx(report["variants"][variant]["perplexity"], rel=1e-6)
    # NVFP4 loses more than FP8: the emulation sees the 4-bit grid
    assert metrics["nvfp4_ppl_increase"] > metrics["fp8_ppl_increase"]


def test_a_failed_gate_publishes_nothing(tmp_path, q_model, tokens):
    from factory.stages.quantize import stage

    cfg = stage.Config(variants=["fp8", "nvfp4"], calibration_samples=8, eval_samples=8, seq_len=32, tasks=[],
                       max_ppl_increase={"fp8": 0.5, "nvfp4": 0.0})
    with pytest.raises(stage.GateError, match="nvfp4: perplexity .* over its gate of 0.00%"):
        stage.run(cfg, {"model": q_model, "tokens": tokens}, tmp_path, StepContext("quantize"))
    assert list(tmp_path.iterdir()) == []


def test_empty_or_short_calibration_fails_cleanly(tmp_path, q_model, tokens):
    from factory.stages.quantize import stage

    with pytest.raises(InputError, match="fewer than calibration_samples = 5000"):
        stage.run(stage.Config(calibration_samples=5000), {"model": q_model, "tokens": tokens}, tmp_path, StepContext("quantize"))
    with pytest.raises(InputError, match="missing from input 'tokens'"):
        stage.run(stage.Config(calibration_split="nope"), {"model": q_model, "tokens": tokens}, tmp_path, StepContext("quantize"))
    assert list(tmp_path.iterdir()) == []


def test_compressed_tensors_variant_loads_in_stock_transformers_on_cpu(quantized, tokens):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from factory.artifacts import Tokens
    from factory.model.checkpoints import lm_loss

    out, metrics = quantized
    folder = out / "fp8-compressed-tensors"
    qc = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "float-quantized" and "lm_head" in qc["ignore"]
    with safe_open(folder / "model.safetensors", "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["backbone.layers.2.mixer.up_proj.weight"] == "F8_E4M3"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    windows = Tokens.of({"tokens": tokens}, "tokens").windows("valid", 32, 16)
    ppl = math.exp(lm_loss(model, windows))
    # the same calibrated scales as the ModelOpt FP8 export: the same perplexity up to BF16 rounding of activations
    assert ppl == pytest.approx(metrics["fp8_perplexity"], rel=0.01)
    ids = windows[:1, :6]
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape == (1, 10)


def test_task_accuracy_of_each_variant_is_measured_on_the_exported_files(quantized, tokens):
    from factory.artifacts import Tokens
    from factory.stages.quantize.modelopt_format import load_modelopt
    from factory.tasks.scoring import score_set
    from factory.tasks.sets import read_set

    out, metrics = quantized
    report = json.loads((out / "quantize.json").read_text())
    base = report["bf16_tasks"]["tiny_cloze"]
    assert base["items"] == 40 and base["accuracy"] >= 0.4  # the trained model has learnt " a" after a verb
    n, p = base["items"], base["accuracy"]
    assert base["accuracy_stderr"] == pytest.approx((p * (1 - p) / (n - 1)) ** 0.5)
    assert set(report["variants"]) == {"fp8", "nvfp4", "mixed", "fp8-compressed-tensors", "nvfp4-compressed-tensors"}
    for key, v in report["variants"].items():
        t = v["tasks"]["tiny_cloze"]
        assert t["accuracy_drop"] == pytest.approx(p - t["accuracy"])
        assert 0 <= t["accuracy_drop_stderr"] <= 0.5 and v["accuracy_gate"] is None and v["passed"]
        assert metrics[f"{key.replace('-', '_')}_tiny_cloze_accuracy"] == t["accuracy"]
    assert metrics["bf16_tiny_cloze_accuracy_stderr"] == base["accuracy_stderr"]
    tokenizer = Tokens.of({"tokens": tokens}, "tokens").tokenizer()
    items = read_set(next(p for p in out.parent.glob("cloze*/tiny_cloze.jsonl")))
    again = score_set(load_modelopt(out / "nvfp4"), tokenizer, items, 32, 8, torch.device("cpu"))
    assert again.accuracy == report["variants"]["nvfp4"]["tasks"]["tiny_cloze"]["accuracy"]


def test_an_accuracy_gate_fails_the_step(tmp_path, q_model, tokens):
    from factory.stages.quantize import stage

    cloze = _cloze(tmp_path)
    # a drop of at most -1 means "better than BF16 on every item": no variant can pass it
    cfg = stage.Config(variants=["fp8"], calibration_samples=8, eval_samples=8, seq_len=32, tasks=[], task_files=[str(cloze)],
                       task_seq_len=32, compressed_tensors=False, max_accuracy_drop={"fp8": -1.0})
    out = tmp_path / "out"
    with pytest.raises(stage.GateError, match="fp8: tiny_cloze accuracy .* over its gate of -1.0000"):
        stage.run(cfg, {"model": q_model, "tokens": tokens}, out, StepContext("quantize"))
    assert list(out.iterdir()) == []
    with pytest.raises(ValueError, match="unknown variants"):
        stage.Config(max_accuracy_drop={"fp4": 0.1})
    with pytest.raises(ValueError, match="unknown built-in sets"):
        stage.Config(tasks=["nope"])


def test_nvfp4_compressed_tensors_holds_the_modelopt_bytes_and_loads_in_stock_transformers(quantized, tokens):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from factory.artifacts import Tokens
    from factory.model.checkpoints import lm_loss

    out, metrics = quantized
    folder = out / "nvfp4-compressed-tensors"
    qc = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "nvfp4-pack-quantized" and "lm_head" in qc["ignore"]
    ct, mo = load_file(folder / "model.safetensors"), load_file(out / "nvfp4" / "model.safetensors")
    name = "backbone.layers.2.mixer.up_proj"
    assert torch.equal(ct[f"{name}.weight_packed"], mo[f"{name}.weight"])  # the same E2M1 codes, packed the same way
    assert torch.equal(ct[f"{name}.weight_scale"].view(torch.uint8), mo[f"{name}.weight_scale"].view(torch.uint8))
    assert float(ct[f"{name}.weight_global_scale"]) == pytest.approx(1 / float(mo[f"{name}.weight_scale_2"]), rel=1e-6)
    assert float(ct[f"{name}.input_global_scale"]) == pytest.approx(1 / float(mo[f"{name}.input_scale"]), rel=1e-6)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()  # BF16, the config's dtype (float32 fails, see the module)
    windows = Tokens.of({"tokens": tokens}, "tokens").windows("valid", 32, 16)
    ppl = math.exp(lm_loss(model, windows))
    assert ppl == pytest.approx(metrics["nvfp4_compressed_tensors_perplexity"], rel=1e-4)
    # the same NVFP4 weights and input quantization as the ModelOpt export; BF16 activations add a little
    assert ppl == pytest.approx(metrics["nvfp4_perplexity"], rel=0.02)
    assert model.generate(windows[:1, :6], max_new_tokens=4, do_sample=False).shape == (1, 10)


def test_fused_projections_share_their_nvfp4_global_scales(q_model, tokens, tmp_path):
    """q, k and v (one `qkv_proj` in vLLM, which dequantizes all three with the largest weight_scale_2 of them) carry
    one weight_scale_2, from the largest weight amax of the three, and one input_scale."""
    from safetensors.torch import load_file

    from factory.stages.quantize import stage

    cfg = stage.Config(variants=["nvfp4"], calibration_samples=8, eval_samples=4, seq_len=32, tasks=[], compressed_tensors=False,
                       max_ppl_increase={"nvfp4": 10.0})
    stage.run(cfg, {"model": q_model, "tokens": tokens}, tmp_path, StepContext("quantize"))
    t, bf16 = load_file(tmp_path / "nvfp4" / "model.safetensors"), load_file(q_model.path / "model" / "model.safetensors")
    layer = "backbone.layers.1.mixer"
    amax = max(float(bf16[f"{layer}.{p}.weight"].to(torch.bfloat16).float().abs().max()) for p in ("q_proj", "k_proj", "v_proj"))
    (shared,) = {float(t[f"{layer}.{p}.weight_scale_2"]) for p in ("q_proj", "k_proj", "v_proj")}
    assert shared == pytest.approx(amax / 2688, rel=1e-6)
    assert len({float(t[f"{layer}.{p}.input_scale"]) for p in ("q_proj", "k_proj", "v_proj")}) == 1
    assert float(t["backbone.layers.2.mixer.up_proj.weight_scale_2"]) != float(t["backbone.layers.2.mixer.down_proj.weight_scale_2"])


def test_a_fused_group_excluded_in_part_is_refused(tmp_path, q_model, tokens):
    from factory.errors import UserError
    from factory.stages.quantize import stage

    cfg = stage.Config(variants=["fp8"], calibration_samples=8, eval_samples=4, seq_len=32, tasks=[], exclude=["*.q_proj"])
    with pytest.raises(UserError, match=r"model.layers.1.mixer.q_proj stay BF16 but model.layers.1.mixer.k_proj, "
                                        r"model.layers.1.mixer.v_proj would not; engines fuse them"):
        stage.run(cfg, {"model": q_model, "tokens": tokens}, tmp_path, StepContext("quantize"))
    assert list(tmp_path.iterdir()) == []


def test_a_llama_quantizes_and_every_variant_reads_back(tmp_path):
    """The Llama family end to end: the ModelOpt variants read back through `load_modelopt` (KV rounded after RoPE),
    the compressed-tensors ones in stock transformers, each within its gate of the BF16 model on the same windows;
    gate and up share their NVFP4 global scale as q, k and v do; the nemotron preset is refused by name."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from factory.errors import UserError
    from factory.stages.quantize import stage
    from tests.builders import publish, random_sentences
    from tests.builders import tokens as tokens_builder
    from tests.builders.architectures import chat_tokenizer, model_folder_of

    model_folder_of("llama", tmp_path / "model" / "model")
    model = publish(tmp_path / "model", "import_model", "checkpoint")
    texts = random_sentences(200, seed=5)
    toks = tokens_builder(tmp_path / "tokens", chat_tokenizer(), {"train": texts[:180], "valid": texts[180:]})
    cfg = stage.Config(variants=["fp8", "nvfp4"], calibration_samples=8, eval_samples=8, seq_len=32, tasks=[],
                       max_ppl_increase={"fp8": 0.01, "nvfp4": 0.05})
    metrics = stage.run(cfg, {"model": model, "tokens": toks}, tmp_path / "out", StepContext("quantize"))
    assert 0 <= abs(metrics["fp8_ppl_increase"]) <= 0.01 and metrics["nvfp4_ppl_increase"] <= 0.05
    assert metrics["nvfp4_compressed_tensors_perplexity"] == pytest.approx(metrics["nvfp4_perplexity"], rel=0.02)
    t = load_file(tmp_path / "out" / "nvfp4" / "model.safetensors")
    assert float(t["model.layers.0.mlp.gate_proj.weight_scale_2"]) == float(t["model.layers.0.mlp.up_proj.weight_scale_2"])
    assert float(t["model.layers.0.self_attn.q_proj.weight_scale_2"]) == float(t["model.layers.0.self_attn.v_proj.weight_scale_2"])
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "fp8-compressed-tensors")).__name__ == "LlamaForCausalLM"
    with pytest.raises(UserError, match="preset 'nemotron' keeps NemotronH's .* this model is a LlamaForCausalLM"):
        stage.run(stage.Config(preset="nemotron", tasks=[]), {"model": model, "tokens": toks}, tmp_path / "again", StepContext("q"))
