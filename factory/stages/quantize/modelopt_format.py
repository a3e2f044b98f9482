"""Model Optimizer's Hugging Face checkpoint format (what vLLM's and TensorRT-LLM's ModelOpt loaders read), written
as Model Optimizer 0.47's `export_hf_checkpoint` writes it for the same quantized BF16 model, and read back.

    hf_quant_config.json   {"producer": {"name": "modelopt", "version": "0.47.0"},
                            "quantization": {"quant_algo": "FP8" | "NVFP4", "kv_cache_quant_algo": "FP8" | null,
                                             "group_size": 16 (NVFP4), "exclude_modules": [patterns]}}
                           or, with more than one format, {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo",
                                             "quantized_layers": {name: {"quant_algo", "group_size"}}}
    config.json            the model's config (transformers' own `save_pretrained` form, dtype bfloat16) plus
                           "quantization_config": the same in compressed-tensors style ("config_groups", "ignore",
                           "quant_algo", "kv_cache_scheme", "producer", "quant_method": "modelopt", and for mixed
                           precision "quantized_layers", which vLLM requires there)
    generation_config.json the model's
    model.safetensors      per quantized linear the tensors of `factory.stages.quantize.ptq` (weight, weight_scale,
                           weight_scale_2 for NVFP4, input_scale); per attention layer k_proj.k_scale and
                           v_proj.v_scale (FP8 KV cache); every other tensor in BF16; all under the checkpoint's names
                           (transformers' reverse weight renaming: NemotronH's `model.` is saved as `backbone.`)

`exclude_modules` lists every module Model Optimizer gives quantizers (linears, convolutions, embeddings) that stays
unquantized, summarised with prefix wildcards the same way (`name*`, or `name.*` where `name*` would also match a
quantized module). tests/stages/quantize/test_modelopt_parity.py runs Model Optimizer's own export beside this one
and diffs the two folders completely.

`load_modelopt` rebuilds an fp32 model of the folder's architecture from those files with dequantized weights, the
inputs of quantized linears fake-quantized with their stored scales and K/V rounded through FP8 with the stored KV
scales: what the engine computes, emulated on CPU, so gates measure the exported files.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import PrefixChange, WeightRenaming, apply_renamings, revert_weight_conversion

from factory.precision.fp8 import fp8_quantize
from factory.precision.nvfp4 import BLOCK
from factory.stages.quantize.ptq import KV_ATTENTION, FakeQuantInput, dequantize_weight, set_kv_action

ALGO = {"fp8": "FP8", "nvfp4": "NVFP4"}
PRODUCER = {"name": "modelopt", "version": "0.47.0"}  # the Model Optimizer release whose format this follows
# The module types Model Optimizer's `mtq.quantize` gives quantizers: those left unquantized are `exclude_modules`.
WRAPPED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja")


def checkpoint_namer(model: nn.Module) -> Callable[[str], str]:
    """Module or tensor name -> its name in the model's checkpoint: transformers' weight renamings, reversed, as
    `save_pretrained` applies them (NemotronH: `model.` -> `backbone.`, NVIDIA's original names, which vLLM maps back;
    the Llama family: unchanged)."""
    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None:  # a model built in memory: the registered mapping, as save_pretrained takes it
        conversions = [c for c in get_model_conversion_mapping(model, add_legacy=False) if not isinstance(c, PrefixChange)]
    renamings = [r for r in (c.reverse_transform() for c in reversed(conversions)) if isinstance(r, WeightRenaming)]
    return lambda name: apply_renamings(name, renamings)


def exclude_patterns(unquantized: Iterable[str], quantized: Iterable[str]) -> list[str]:
    """Prefix-wildcard summary of the `unquantized` module names that matches none of the `quantized` ones, as Model
    Optimizer writes exclude_modules: per name, the shortest of `prefix*` (cut at a dot), then `prefix.*`, then the
    name itself, that no quantized module falls under."""
    quantized = list(quantized)

    def hits_quantized(pattern: str) -> bool:
        if pattern.endswith("*"):
            return any(q.startswith(pattern[:-1]) for q in quantized)
        return pattern in quantized

    out: set[str] = set()
    for name in unquantized:
        cuts = [i for i, c in enumerate(name) if c == "."]
        for candidate in [p for i in cuts for p in (name[:i] + "*", name[:i] + ".*")] + [name]:
            # `prefix.*` stands for the pair {prefix, prefix.*} (the module itself and all below it)
            if candidate.endswith(".*") and (hits_quantized(candidate) or hits_quantized(candidate[:-2])):
                continue
            if not candidate.endswith(".*") and hits_quantized(candidate):
                continue
            out.add(candidate)
            break
    return sorted(out)


def _layer_config(fmt: str) -> dict:
    return {"quant_algo": "NVFP4", "group_size": BLOCK} if fmt == "nvfp4" else {"quant_algo": ALGO[fmt]}


def quant_config(formats: dict[str, str], wrapped: list[str], kv_fp8: bool, namer: Callable[[str], str]) -> dict:
    """The `quantization` section of hf_quant_config.json: per-linear `formats` (name -> fp8 | nvfp4 | bf16), the
    module names Model Optimizer would wrap, in module order."""
    quantized = [n for n in wrapped if formats.get(n, "bf16") != "bf16"]
    configs = {n: _layer_config(formats[n]) for n in quantized}
    section: dict = {"quant_algo": None, "kv_cache_quant_algo": "FP8" if kv_fp8 else None}
    if len({json.dumps(c, sort_keys=True) for c in configs.values()}) > 1:
        section.update(quant_algo="MIXED_PRECISION", quantized_layers={namer(n): configs[n] for n in quantized})
    elif configs:
        section.update(next(iter(configs.values())))
        unquantized = [n for n in wrapped if n not in configs]
        section["exclude_modules"] = [namer(p) for p in exclude_patterns(unquantized, quantized)]  # sorted before renaming
    return section


def config_json_section(hf_quant: dict) -> dict:
    """hf_quant_config.json as config.json's `quantization_config` (Model Optimizer's compressed-tensors-style copy,
    which vLLM reads before hf_quant_config.json)."""
    q = hf_quant["quantization"]

    def group(layer: dict) -> dict:
        bits = 4 if layer["quant_algo"] == "NVFP4" else 8
        extra = {"group_size": layer["group_size"]} if "group_size" in layer else {}
        return {"input_activations": {"dynamic": False, "num_bits": bits, "type": "float", **extra},
                "weights": {"dynamic": False, "num_bits": bits, "type": "float", **extra}}

    out: dict = {}
    if q["quant_algo"] == "MIXED_PRECISION":
        by_config: dict[str, list[str]] = {}
        for name, layer in q["quantized_layers"].items():
            by_config.setdefault(json.dumps(sorted(layer.items())), []).append(name)
        out["config_groups"] = {f"group_{i}": {**group(dict(json.loads(key))), "targets": sorted(names)}
                                for i, (key, names) in enumerate(by_config.items())}
        out["quantized_layers"] = q["quantized_layers"]
    elif q["quant_algo"]:
        out["config_groups"] = {"group_0": {**group(q), "targets": ["Linear"]}}
    out["ignore"] = q.get("exclude_modules", [])
    if q["quant_algo"]:
        out["quant_algo"] = q["quant_algo"]
    if q["kv_cache_quant_algo"] == "FP8":
        out["kv_cache_scheme"] = {"dynamic": False, "num_bits": 8, "type": "float"}
    out["producer"] = hf_quant["producer"]
    out["quant_method"] = "modelopt"
    return out


def write_modelopt(model: nn.Module, folder: Path, formats: dict[str, str], exported: dict[str, dict[str, torch.Tensor]],
                   kv_scales: dict[str, torch.Tensor], tokenizer_from: Path | None = None) -> None:
    """Write `model` (fp32 or bf16, any architecture `ptq` quantizes) as a ModelOpt HF checkpoint into `folder`
    (created; must not exist)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    namer = checkpoint_namer(model)
    quantized = {n for n, f in formats.items() if f != "bf16"}
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})  # saved once, under the name they are tied to
    plain = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
             if k not in tied and not (k.endswith(".weight") and k[: -len(".weight")] in quantized)}
    state = dict(revert_weight_conversion(model, plain))  # checkpoint names, MoE experts split as saved
    for module in sorted(quantized):
        for suffix, t in exported[module].items():
            state[namer(f"{module}.{suffix}")] = t.contiguous()
    for name, scale in kv_scales.items():  # "<attention>.k_proj.k_scale"
        state[namer(name)] = scale.float().reshape(()).contiguous()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})

    wrapped = [n for n, m in model.named_modules() if isinstance(m, WRAPPED)]
    hf_quant = {"producer": PRODUCER, "quantization": quant_config(formats, wrapped, bool(kv_scales), namer)}
    (folder / "hf_quant_config.json").write_text(json.dumps(hf_quant, indent=4))
    config = copy.deepcopy(model.config)
    config.dtype = torch.bfloat16
    config.architectures = [type(model).__name__]
    config.save_pretrained(folder)  # transformers' own form of the config (non-finite floats and all)
    data = json.loads((folder / "config.json").read_text())
    data["quantization_config"] = config_json_section(hf_quant)
    (folder / "config.json").write_text(json.dumps(data, indent=4))
    model.generation_config.save_pretrained(folder)
    if tokenizer_from is not None:
        for f in Path(tokenizer_from).iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in TOKENIZER_FILES):
                shutil.copy2(f, folder / f.name)


def load_modelopt(folder: Path) -> nn.Module:
    """An fp32 model of the folder's architecture that computes what the ModelOpt checkpoint in `folder` computes
    (emulated: dequantized weights, fake-quantized inputs, K and V rounded through the FP8 KV cache)."""
    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)  # transformers' reader: non-finite floats come back as floats
    if hasattr(config, "quantization_config"):  # stock transformers has no ModelOpt quantizer: the weights come below
        del config.quantization_config
    section = json.loads((folder / "hf_quant_config.json").read_text())["quantization"]
    tensors = load_file(folder / "model.safetensors")
    quantized = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    parts = {name: {s: tensors.pop(f"{name}.{s}") for s in ("weight", "weight_scale", "weight_scale_2", "input_scale")
                    if f"{name}.{s}" in tensors} for name in quantized}
    kv = {k: tensors.pop(k) for k in [k for k in tensors if k.endswith(("k_proj.k_scale", "v_proj.v_scale"))]}
    state = {k: v.float() for k, v in tensors.items()}
    for name, p in parts.items():  # dequantized into the checkpoint's names: transformers maps them as it loads
        fmt = "nvfp4" if "weight_scale_2" in p else "fp8"
        shape = (p["weight"].shape[0], p["weight"].shape[1] * (2 if fmt == "nvfp4" else 1))
        state[f"{name}.weight"] = dequantize_weight(p, fmt, torch.Size(shape))
    model_class = getattr(transformers, config.architectures[0])
    model = model_class.from_pretrained(None, config=config, state_dict=state, dtype=torch.float32).eval()
    namer = checkpoint_namer(model)
    modules = dict(model.named_modules())
    by_checkpoint_name = {namer(n): n for n in modules}
    missing = [n for n in quantized if n not in by_checkpoint_name] + [k for k in kv if k.rsplit(".", 2)[0] not in by_checkpoint_name]
    if missing:
        raise ValueError(f"{folder / 'model.safetensors'}: tensors of modules the config has not ({missing[:3]})")
    for name, p in parts.items():
        module = by_checkpoint_name[name]
        parent, _, child = module.rpartition(".")
        setattr(modules[parent], child, FakeQuantInput(modules[module], "nvfp4" if "weight_scale_2" in p else "fp8", p["input_scale"]))
    if section.get("kv_cache_quant_algo") == "FP8" and kv:
        for attention in {k.rsplit(".", 2)[0] for k in kv}:
            k_scale, v_scale = kv[f"{attention}.k_proj.k_scale"].float(), kv[f"{attention}.v_proj.v_scale"].float()
            set_kv_action(modules[by_checkpoint_name[attention]], _fp8_kv(k_scale, v_scale))
        model.set_attn_implementation(KV_ATTENTION)
    return model


def _fp8_kv(k_scale: torch.Tensor, v_scale: torch.Tensor):
    """Round K and V through FP8 E4M3 with their static KV-cache scales, as the engine's FP8 KV cache stores them."""
    def action(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(((fp8_quantize(t.float(), "e4m3", scale=1.0 / s)[0].float() * s).to(t.dtype)) for t, s in ((k, k_scale), (v, v_scale)))
    return action
