"""Settings of the math-aware extractor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from factory.stage import StageConfig, no_effect


class MathConfig(StageConfig):
    """How math pages are turned into text."""

    renderer: Literal["lynx", "builtin"] = Field(
        "builtin", description="HTML-to-text renderer: 'builtin' (lxml, pure Python, the same text on every machine) or "
        "'lynx' (layout-aware `lynx -dump`, as Nemotron-CC-Math; needs the system package lynx).")
    lynx_width: int = Field(
        1024, ge=40, le=1024, description="Columns lynx lays text out in; wide so paragraphs are not hard-wrapped.")
    timeout_s: float = no_effect(30.0, "Seconds lynx may spend on one page; a page that runs past it is skipped.")
    drop_boilerplate: bool = Field(
        True, description="Remove nav/header/footer/aside and elements whose role/class/id says navigation.")
    min_chars: int = Field(
        20, ge=0, description="Pages whose extracted text is shorter than this many characters give None.")


    def required_tools(self) -> dict[str, str]:
        """System programs these settings need, by the field that asks for them (checked when a spec loads)."""
        return {"renderer": "lynx"} if self.renderer == "lynx" else {}
