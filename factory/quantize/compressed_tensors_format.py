"""The FP8 variant as a compressed-tensors checkpoint: stock transformers loads it on CPU (a laptop can run the
quantized release), through the `compressed-tensors` library's own compressor, so the format is the library's.

The scales are this stage's calibrated ones: per linear `weight_scale` = amax(W) / 448 and static
`input_scale` = calibrated amax(x) / 448 (per-tensor, format "float-quantized"); linears kept in BF16 are listed
in `ignore`. transformers applies the input quantization in the forward pass (status "frozen").
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
from torch import nn


def write_compressed_tensors_fp8(model: nn.Module, folder: Path, formats: dict[str, str], exported: dict[str, dict[str, torch.Tensor]],
                                 tokenizer_from: Path | None = None) -> None:
    """Write `model` with the FP8 linears of `formats` as a compressed-tensors checkpoint into `folder` (new)."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, apply_quantization_config, preset_name_to_scheme

    if any(f not in ("fp8", "bf16") for f in formats.values()):
        raise ValueError("the compressed-tensors export holds FP8 and BF16 linears only")
    m = copy.deepcopy(model).to(torch.bfloat16)
    ignore = sorted(n for n, mod in m.named_modules() if isinstance(mod, nn.Linear) and formats.get(n, "bf16") != "fp8")
    config = QuantizationConfig(config_groups={"group_0": preset_name_to_scheme("FP8", ["Linear"])}, ignore=ignore,
                                quantization_status=QuantizationStatus.FROZEN, format="float-quantized")
    apply_quantization_config(m, config)
    modules = dict(m.named_modules())
    with torch.no_grad():
        for name, fmt in formats.items():
            if fmt == "fp8":
                modules[name].weight_scale.fill_(float(exported[name]["weight_scale"]))
                modules[name].input_scale.fill_(float(exported[name]["input_scale"]))
    compressor = ModelCompressor.from_pretrained_model(m, quantization_format="float-quantized")
    compressor.compress_model(m)
    folder = Path(folder)
    m.save_pretrained(folder)
    compressor.update_config(folder)
    if tokenizer_from is not None:
        for f in Path(tokenizer_from).iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja")):
                shutil.copy2(f, folder / f.name)
