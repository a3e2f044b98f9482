"""The FP8 and NVFP4 variants as compressed-tensors checkpoints: stock transformers loads them on CPU (a laptop can
run the quantized release), written through the `compressed-tensors` library's own compressor, so the format is
the library's ("float-quantized" for FP8, "nvfp4-pack-quantized" for NVFP4).

The scales are this stage's calibrated ones, converted to compressed-tensors' conventions:

    FP8    weight_scale = amax(W) / 448, input_scale = calibrated amax(x) / 448 (per tensor, static)
    NVFP4  weight_global_scale = 1 / weight_scale_2 = 6 * 448 / amax(W)      (a *quantization* multiplier)
           weight_scale = the ModelOpt export's E4M3 block scales, byte for byte ([out, in / 16])
           input_global_scale = 1 / input_scale = 6 * 448 / calibrated amax(x); the block scales of
           activations are computed per 16 values at run time (`dynamic: "local"`), as vLLM does
           weight_packed = E2M1 codes, two per byte: the same bytes as the ModelOpt export's `weight`

Linears kept in BF16 are listed in `ignore`. transformers quantizes the inputs in the forward pass.

Loading on CPU: `AutoModelForCausalLM.from_pretrained(folder)` (the config's BF16) works for both. With
`dtype=torch.float32` the FP8 one works, the NVFP4 one does not: compressed-tensors 0.20 decompresses NVFP4
weights into BF16 whatever the model's dtype (`compressors/nvfp4/helpers.py`, `unpack_fp4_from_uint8(...,
dtype=torch.bfloat16)`), so the first float32 matmul fails with "expected m1 and m2 to have the same dtype".
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
from compressed_tensors.compressors import ModelCompressor
from compressed_tensors.quantization import (
    QuantizationConfig,
    QuantizationStatus,
    apply_quantization_config,
    preset_name_to_scheme,
)
from torch import nn

# The library's preset scheme and on-disk format per factory format.
SCHEME = {"fp8": ("FP8", "float-quantized"), "nvfp4": ("NVFP4", "nvfp4-pack-quantized")}


def write_compressed_tensors(model: nn.Module, folder: Path, formats: dict[str, str], exported: dict[str, dict[str, torch.Tensor]],
                             tokenizer_from: Path | None = None) -> None:
    """Write `model` with the quantized linears of `formats` (one format, fp8 or nvfp4; the rest bf16) as a
    compressed-tensors checkpoint into `folder` (new), with the scales of `exported` (ModelOpt's tensors)."""
    used = {f for f in formats.values() if f != "bf16"}
    if len(used) != 1 or not used <= set(SCHEME):
        raise ValueError(f"a compressed-tensors export holds one format (fp8 or nvfp4) besides bf16, got {sorted(used)}")
    (fmt,) = used
    preset, disk_format = SCHEME[fmt]
    m = copy.deepcopy(model).to(torch.bfloat16)
    ignore = sorted(n for n, mod in m.named_modules() if isinstance(mod, nn.Linear) and formats.get(n, "bf16") == "bf16")
    config = QuantizationConfig(config_groups={"group_0": preset_name_to_scheme(preset, ["Linear"])}, ignore=ignore,
                                quantization_status=QuantizationStatus.FROZEN, format=disk_format)
    apply_quantization_config(m, config)
    modules = dict(m.named_modules())
    with torch.no_grad():
        for name, f in formats.items():
            if f == "bf16":
                continue
            t, module = exported[name], modules[name]
            if fmt == "fp8":
                module.weight_scale.fill_(float(t["weight_scale"]))
                module.input_scale.fill_(float(t["input_scale"]))
            else:
                module.weight_global_scale.fill_(float(1.0 / t["weight_scale_2"].float()))
                module.weight_scale.copy_(t["weight_scale"].to(module.weight_scale.dtype))
                module.input_global_scale.fill_(float(1.0 / t["input_scale"].float()))
    compressor = ModelCompressor.from_pretrained_model(m, quantization_format=disk_format)
    compressor.compress_model(m)
    if fmt == "nvfp4":
        # The library re-derives the codes from the BF16 weight and the scales above; store the export's own
        # codes and block scales, so the two exports hold the same quantized weights.
        with torch.no_grad():
            for name, f in formats.items():
                if f == "nvfp4":
                    modules[name].weight_packed.copy_(exported[name]["weight"])
                    modules[name].weight_scale.copy_(exported[name]["weight_scale"])
    folder = Path(folder)
    m.save_pretrained(folder)
    compressor.update_config(folder)
    if tokenizer_from is not None:
        for f in Path(tokenizer_from).iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja")):
                shutil.copy2(f, folder / f.name)
