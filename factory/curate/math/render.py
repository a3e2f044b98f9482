"""HTML to layout-aware text: `lynx -dump` (as Nemotron-CC-Math does) or a small lxml renderer.

Both take an HTML string and return plain text; placeholders for math and code (see
`factory.curate.math`) are plain words, so they pass through either renderer unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import lxml.html

from factory.errors import InputError

LYNX_PACKAGE = "lynx"


class RenderTimeout(Exception):
    """The renderer ran past its time limit on one page (a data problem: the page is skipped)."""


def lynx_dump(html: str, width: int, timeout_s: float) -> str:
    """The page as `lynx -dump -nolist` renders it: layout kept, link lists and link numbers left out."""
    lynx = shutil.which("lynx")
    if lynx is None:
        raise InputError(f"the math extractor's renderer 'lynx' is not installed: install the Debian package "
                         f"'{LYNX_PACKAGE}' (apt-get install -y {LYNX_PACKAGE}) or set renderer: builtin")
    cmd = [lynx, "-dump", "-nolist", "-nomargins", f"-width={width}", "-display_charset=utf-8",
           "-assume_charset=utf-8", "-noreferer", "-force_html", "-stdin"]
    try:
        done = subprocess.run(cmd, input=html.encode("utf-8"), capture_output=True, timeout=timeout_s, check=False,
                              env={"LANG": "C.UTF-8", "TERM": "dumb", "HOME": "/nonexistent"})
    except subprocess.TimeoutExpired as exc:
        raise RenderTimeout(f"lynx ran past {timeout_s} s") from exc
    return done.stdout.decode("utf-8", errors="replace")


_BLOCKS = {"address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div", "dl", "dt",
           "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
           "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot",
           "tr", "ul"}
_CELLS = {"td", "th"}


def builtin_text(html: str) -> str:
    """A dependency-free renderer: block elements become line breaks, `<pre>` keeps its text verbatim."""
    root = lxml.html.document_fromstring(html)
    parts: list[str] = []

    def walk(el, in_pre: bool) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        pre = in_pre or tag == "pre"
        if tag in _BLOCKS:
            parts.append("\n")
        if tag == "li":
            parts.append("* ")
        if tag == "br":
            parts.append("\n")
        if tag and el.text:
            parts.append(el.text if pre else re.sub(r"\s+", " ", el.text))
        for child in el:
            walk(child, pre)
        if tag in _BLOCKS:
            parts.append("\n")
        elif tag in _CELLS:
            parts.append(" ")
        if el.tail:
            parts.append(el.tail if in_pre else re.sub(r"\s+", " ", el.tail))

    walk(root, False)
    return "".join(parts)
