"""Low-precision number formats and training converters (FP8, NVFP4), with exact CPU emulation.

    from factory.precision import fp8_quantize, fp8_dequantize, nvfp4_quantize, nvfp4_dequantize
    data, scale = fp8_quantize(x, "e4m3")          # data ~= x * scale; x ~= fp8_dequantize(data, scale)
    q = nvfp4_quantize(w, block_2d=True)           # NVFP4Tensor: packed E2M1 codes, E4M3 block scales, fp32 global
    w_hat = nvfp4_dequantize(q)

    from factory.precision import convert_model, PrecisionConfig
    convert_model(model, "fp8", PrecisionConfig(high_precision_layers=("lm_head", "model.layers.0.*")))
"""

from factory.lazy import lazy_exports
from factory.precision.config import PrecisionConfig

# Everything but the config needs torch: these names load their module on first use, so a stage config
# that embeds `PrecisionConfig` (and so `load_spec`) does not import torch.
_LAZY = {
    "ConverterOrderError": "convert",
    "convert_model": "convert",
    "record_converter": "convert",
    "fp8_dequantize": "fp8",
    "fp8_quantize": "fp8",
    "scaled_mm": "fp8",
    "select_modules": "layers",
    "Float8Linear": "linear",
    "NVFP4Linear": "linear",
    "NVFP4Tensor": "nvfp4",
    "nvfp4_dequantize": "nvfp4",
    "nvfp4_quantize": "nvfp4",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.precision.{module}" for name, module in _LAZY.items()})

__all__ = ["PrecisionConfig", *sorted(_LAZY)]
