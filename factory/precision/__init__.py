"""Low-precision number formats and training converters (FP8, NVFP4), with exact CPU emulation.

    from factory.precision import fp8_quantize, fp8_dequantize, nvfp4_quantize, nvfp4_dequantize
    data, scale = fp8_quantize(x, "e4m3")          # data ~= x * scale; x ~= fp8_dequantize(data, scale)
    q = nvfp4_quantize(w, block_2d=True)           # NVFP4Tensor: packed E2M1 codes, E4M3 block scales, fp32 global
    w_hat = nvfp4_dequantize(q)

    from factory.precision import convert_model, PrecisionConfig
    convert_model(model, "fp8", PrecisionConfig(keep_first_n=1, keep_last_n=1))
"""

from factory.precision.convert import ConverterOrderError, PrecisionConfig, convert_model, record_converter
from factory.precision.fp8 import fp8_dequantize, fp8_quantize, scaled_mm
from factory.precision.linear import Float8Linear, NVFP4Linear
from factory.precision.nvfp4 import NVFP4Tensor, nvfp4_dequantize, nvfp4_quantize

__all__ = [
    "ConverterOrderError",
    "Float8Linear",
    "NVFP4Linear",
    "NVFP4Tensor",
    "PrecisionConfig",
    "convert_model",
    "fp8_dequantize",
    "fp8_quantize",
    "nvfp4_dequantize",
    "nvfp4_quantize",
    "record_converter",
    "scaled_mm",
]
