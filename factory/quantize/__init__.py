"""Post-training quantization (FP8, NVFP4, mixed precision) and Model Optimizer's HF export."""

from factory.lazy import lazy_exports

_LAZY = {
    "calibrate": "ptq", "choose_formats": "ptq", "quantize_weight": "ptq", "quantizable_linears": "ptq",
    "load_modelopt": "modelopt_format", "write_modelopt": "modelopt_format",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.quantize.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
