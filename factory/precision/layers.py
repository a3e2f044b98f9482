"""Choosing a model's layers by name, for the precision recipes (layers kept in high precision during
FP8 / NVFP4 training) and for post-training quantization (layers excluded from quantization).

A pattern is a shell-style pattern (`fnmatch`, case-sensitive) over qualified module names, the names
`model.named_modules()` gives and checkpoints use, as Model Optimizer's `exclude_modules` does:

    "lm_head"                 the output projection
    "model.layers.0.*"        every module inside the first block
    "model.layers.-1.*"       every module inside the last block: an index into an `nn.ModuleList` (or
                              `nn.Sequential`) may count from the end, -1 being the last entry
    "*.mixer.o_proj"          the attention output projection of every block

    from factory.precision.layers import select_modules
    kept = select_modules(model, ("lm_head", "model.layers.0.*", "model.layers.-1.*"))
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

__all__ = ["matches_any", "module_spellings", "select_modules"]


def module_spellings(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Every module's qualified name -> the names a pattern may match it by: the name itself, and the name
    with each index into a ModuleList / Sequential counted from the end (`layers.5` of 6 is `layers.-1`)."""
    lengths = {name: len(m) for name, m in model.named_modules() if isinstance(m, (nn.ModuleList, nn.Sequential))}
    out: dict[str, tuple[str, ...]] = {}
    for name, _ in model.named_modules():
        parts = name.split(".") if name else []
        negative = list(parts)
        for i, part in enumerate(parts):
            parent = ".".join(parts[:i])
            if part.isdigit() and parent in lengths:
                negative[i] = str(int(part) - lengths[parent])
        out[name] = tuple(dict.fromkeys((name, ".".join(negative))))
    return out


def matches_any(spellings: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether any of a module's names matches any of `patterns`."""
    return any(fnmatchcase(name, pattern) for name in spellings for pattern in patterns)


def select_modules(model: nn.Module, patterns: Sequence[str], kind: type[nn.Module] = nn.Linear) -> list[str]:
    """Qualified names, in model order, of the modules of type `kind` that match one of `patterns`."""
    spellings = module_spellings(model)
    return [name for name, m in model.named_modules()
            if isinstance(m, kind) and name and matches_any(spellings[name], patterns)]
