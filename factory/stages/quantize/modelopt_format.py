"""Model Optimizer's Hugging Face checkpoint format (what vLLM's and TensorRT-LLM's ModelOpt loaders read),
written and read back.

    hf_quant_config.json   {"producer": {"name": "modelopt", ...},
                            "quantization": {"quant_algo": "FP8" | "NVFP4" | "MIXED_PRECISION",
                                             "kv_cache_quant_algo": "FP8" | null, "group_size": 16 (NVFP4),
                                             "exclude_modules": [linears kept in BF16],
                                             "quantized_layers": {name: {"quant_algo", "group_size"}} (mixed only)}}
    config.json            the model config plus "quantization_config": {"quant_method": "modelopt", "quant_algo",
                           "kv_cache_scheme", "group_size", "ignore": exclude_modules, "producer"}
    model.safetensors      per quantized linear the tensors of `factory.stages.quantize.ptq` (weight, weight_scale,
                           weight_scale_2 for NVFP4, input_scale); per attention layer k_proj.k_scale and
                           v_proj.v_scale (FP8 KV cache); every other tensor in BF16.

`load_modelopt` rebuilds an fp32 `NemotronHForCausalLM` from those files with dequantized weights, the inputs of
quantized linears fake-quantized with their stored scales and K/V rounded through FP8 with the stored KV
scales: what the engine computes, emulated on CPU, so gates measure the exported files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import NemotronHConfig, NemotronHForCausalLM

from factory.precision.fp8 import fp8_quantize
from factory.precision.nvfp4 import BLOCK
from factory.stages.quantize.ptq import FakeQuantInput, dequantize_weight

ALGO = {"fp8": "FP8", "nvfp4": "NVFP4"}
PRODUCER = {"name": "modelopt", "version": "0.47.0"}  # the Model Optimizer release whose format this follows


def checkpoint_name(name: str) -> str:
    """The name a module or tensor has in a NemotronH checkpoint: transformers saves the `model.` submodule as
    `backbone.` (NVIDIA's original names, which vLLM maps back), so exports use the same names."""
    return "backbone." + name[len("model."):] if name.startswith("model.") else name


def module_name(name: str) -> str:
    """Inverse of `checkpoint_name`."""
    return "model." + name[len("backbone."):] if name.startswith("backbone.") else name


def quant_config(formats: dict[str, str], all_linears: list[str], kv_fp8: bool) -> dict:
    """The `quantization` section of hf_quant_config.json for per-linear `formats` (name -> fp8 | nvfp4 | bf16)."""
    used = sorted({f for f in formats.values() if f != "bf16"})
    excluded = sorted(checkpoint_name(n) for n in set(all_linears) - {n for n, f in formats.items() if f != "bf16"})
    section: dict = {"quant_algo": ALGO[used[0]] if len(used) == 1 else "MIXED_PRECISION",
                     "kv_cache_quant_algo": "FP8" if kv_fp8 else None, "exclude_modules": excluded}
    if "nvfp4" in used:
        section["group_size"] = BLOCK
    if len(used) > 1:
        section["quantized_layers"] = {
            checkpoint_name(n): ({"quant_algo": "NVFP4", "group_size": BLOCK} if f == "nvfp4" else {"quant_algo": "FP8"})
            for n, f in sorted(formats.items()) if f != "bf16"
        }
    return section


def write_modelopt(model: nn.Module, folder: Path, formats: dict[str, str], exported: dict[str, dict[str, torch.Tensor]],
                   kv_scales: dict[str, torch.Tensor], tokenizer_from: Path | None = None) -> None:
    """Write `model` (fp32/bf16 NemotronH) as a ModelOpt HF checkpoint into `folder` (created; must not exist)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    state = {}
    quantized = {n for n, f in formats.items() if f != "bf16"}
    for key, value in model.state_dict().items():
        module = key.rsplit(".", 1)[0]
        if module in quantized and key.endswith(".weight"):
            for suffix, t in exported[module].items():
                state[checkpoint_name(f"{module}.{suffix}")] = t.contiguous()
        else:
            state[checkpoint_name(key)] = value.detach().to(torch.bfloat16).contiguous()
    for name, scale in kv_scales.items():  # "<layer>.mixer.k_proj.k_scale"
        state[checkpoint_name(name)] = scale.float().reshape(()).contiguous()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    section = quant_config(formats, [n for n, m in model.named_modules() if isinstance(m, nn.Linear)], bool(kv_scales))
    (folder / "hf_quant_config.json").write_text(json.dumps({"producer": PRODUCER, "quantization": section}, indent=2))
    config = model.config.to_dict()
    config["torch_dtype"] = config["dtype"] = "bfloat16"
    config["quantization_config"] = {
        "quant_method": "modelopt",
        "quant_algo": section["quant_algo"],
        "group_size": section.get("group_size"),
        "kv_cache_scheme": {"type": "float", "num_bits": 8, "dynamic": False, "strategy": "tensor"} if kv_scales else None,
        "ignore": section["exclude_modules"],
        "producer": PRODUCER,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(folder)
    if tokenizer_from is not None:
        for f in Path(tokenizer_from).iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja")):
                shutil.copy2(f, folder / f.name)


def load_modelopt(folder: Path) -> nn.Module:
    """An fp32 NemotronHForCausalLM that computes what the ModelOpt checkpoint in `folder` computes (emulated)."""
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("quantization_config", None)
    config = NemotronHConfig.from_dict(raw)
    section = json.loads((folder / "hf_quant_config.json").read_text())["quantization"]
    tensors = {module_name(k): v for k, v in load_file(folder / "model.safetensors").items()}
    torch.manual_seed(0)
    model = NemotronHForCausalLM(config).float().eval()
    modules = dict(model.named_modules())
    quantized = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    plain = {k: v.float() for k, v in tensors.items()
             if k.rsplit(".", 1)[0] not in quantized and not k.endswith(("k_scale", "v_scale"))}
    missing, unexpected = model.load_state_dict(plain, strict=False)
    expected_missing = {f"{n}.weight" for n in quantized}
    if set(missing) != expected_missing or unexpected:
        raise ValueError(f"{folder / 'model.safetensors'}: tensors do not match the config (missing {sorted(set(missing) - expected_missing)[:3]}, "
                         f"unexpected {unexpected[:3]})")
    for name in quantized:
        parts = {s: tensors[f"{name}.{s}"] for s in ("weight", "weight_scale", "weight_scale_2", "input_scale") if f"{name}.{s}" in tensors}
        fmt = "nvfp4" if "weight_scale_2" in parts else "fp8"
        linear = modules[name]
        with torch.no_grad():
            linear.weight.copy_(dequantize_weight(parts, fmt, linear.weight.shape))
        parent, _, child = name.rpartition(".")
        setattr(modules[parent], child, FakeQuantInput(linear, fmt, parts["input_scale"]))
    if section.get("kv_cache_quant_algo") == "FP8":
        for key, scale in tensors.items():
            if key.endswith(("k_proj.k_scale", "v_proj.v_scale")):
                module = dict(model.named_modules())[key.rsplit(".", 1)[0]]
                module.register_forward_hook(_kv_fp8_hook(scale.float()))
    return model


def _kv_fp8_hook(scale: torch.Tensor):
    """Round a K or V projection's output through FP8 E4M3 with its static KV-cache scale."""
    def hook(_module, _args, out):
        data, _ = fp8_quantize(out.float(), "e4m3", scale=1.0 / scale)
        return (data.float() * scale).to(out.dtype)
    return hook
