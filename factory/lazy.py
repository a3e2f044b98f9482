"""Names a package exports without importing their modules until first use (PEP 562 `__getattr__`).

Stage configs are imported by every step that loads a spec; the torch- or megatron-backed code beside
them is needed only when a stage runs, so packages export it lazily:

    __getattr__ = lazy_exports(__name__, {"Trainer": "factory.train.trainer"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `names[name]` (a module path) on first access and returns its `name`."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
