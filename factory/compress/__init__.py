"""Minitron compression of NemotronH models: activation importance, width/depth surgery, budget search."""

from factory.lazy import lazy_exports

_LAZY = {
    "Importance": "importance",
    "measure_importance": "importance",
    "Budget": "config", "PruneTarget": "config", "SearchSpace": "config",
    "pattern_of": "surgery", "prune_model": "surgery",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.compress.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
