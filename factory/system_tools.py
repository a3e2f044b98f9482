"""System programs (not Python packages) that a spec's settings need, checked when a spec is resolved to run.

Every default in the factory runs with Python and pip alone. A setting that asks for a system program
(`stages.curate.math.renderer: lynx`; code benchmarks in evaluate need bubblewrap's `bwrap`) declares it through a `required_tools()` method on its config,
returning {field name: program}; `check_system_tools(spec)` finds them all and fails before any step runs,
with one line that names the field, the program and how to install it. There is no silent fallback: the
same spec gives the same result on every machine, or does not start.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from factory.errors import SpecError

# How to install each program a setting may ask for.
INSTALL = {
    "lynx": "apt-get install -y lynx (Debian, Ubuntu), dnf install lynx (Fedora), brew install lynx (macOS)",
    "bwrap": "apt-get install -y bubblewrap (Debian, Ubuntu), dnf install bubblewrap (Fedora)",
}


def required_tools(config: BaseModel, prefix: str) -> Iterator[tuple[str, str]]:
    """(dotted field path, program) for every program `config` or its sub-configs ask for.

    A sub-config switched off (`enabled: false`) asks for nothing.
    """
    if getattr(config, "enabled", True) is False:
        return
    ask = getattr(config, "required_tools", None)
    if callable(ask):
        for field, tool in ask().items():
            yield f"{prefix}.{field}", tool
    for name in type(config).model_fields:
        value: Any = getattr(config, name)
        if isinstance(value, BaseModel):
            yield from required_tools(value, f"{prefix}.{name}")


def missing_tools(spec) -> list[tuple[str, str]]:
    """(field path, program) for each program the spec's enabled stages need that is not on PATH."""
    return [(path, tool) for name in spec.enabled() for path, tool in required_tools(spec.stage_config(name), f"stages.{name}")
            if shutil.which(tool) is None]


def check_system_tools(spec) -> None:
    """Raise one `SpecError` naming the first missing program, the field that asks for it and how to install it."""
    missing = missing_tools(spec)
    if missing:
        path, tool = missing[0]
        raise SpecError(f"{path}: needs the system program {tool!r}, which is not installed; install it "
                        f"({INSTALL.get(tool, f'your package manager: {tool}')}) or change {path}")
