"""Post-training quantization (FP8, NVFP4, mixed precision); Model Optimizer's HF export and compressed-tensors."""

from factory.lazy import lazy_exports

_LAZY = {
    "calibrate": "ptq", "choose_formats": "ptq", "quantize_weight": "ptq", "quantizable_linears": "ptq",
    "load_modelopt": "modelopt_format", "write_modelopt": "modelopt_format", "write_compressed_tensors": "compressed_tensors_format",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.quantize.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
