"""Math-aware extraction (Nemotron-CC-Math): web pages with equations in, text with LaTeX out.

Generic extractors (trafilatura, justext) drop most equations because MathJax, KaTeX and MathML live in
scripts, hidden spans and images. This module first finds every equation in the page and replaces it by
a placeholder word, drops navigation and footers, renders the rest to layout-aware text with `lynx -dump`
(or a small builtin renderer), then puts the equations back as `$...$` (inline) and `$$...$$` (display),
and code blocks back verbatim.

    from factory.curate.math import MathConfig, extract_math_page, has_math
    text = extract_math_page(html, MathConfig()) if has_math(html) else None

Recognised math: MathML `<math>` (its TeX annotation when present, else converted), MathJax v2
`<script type="math/tex">` (`; mode=display`), MathJax v3/v4 `mjx-container` (`data-latex`, assistive
MathML), KaTeX (`.katex` with its TeX annotation), Wikipedia `.mwe-math-element`, images with LaTeX alt
text (Sphinx imgmath `img.math`, `mwe-math-fallback-image`, LaTeX-rendering services), and `\\(...\\)`,
`\\[...\\]`, `$$...$$`, `$...$` and `\\begin{equation}` environments already in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import lxml.etree
import lxml.html
from pydantic import Field

from factory.curate.math.mathml import mathml_to_latex, tex_annotation
from factory.curate.math.render import RenderTimeout, builtin_text, lynx_dump
from factory.stage import StageConfig, no_effect

__all__ = ["MathConfig", "has_math", "extract_math_page", "equations_in_html", "equation_preservation"]


class MathConfig(StageConfig):
    """How math pages are turned into text."""

    renderer: Literal["lynx", "builtin"] = Field(
        "lynx", description="HTML-to-text renderer: 'lynx' (layout-aware, Debian package lynx) or 'builtin' (lxml).")
    lynx_width: int = Field(
        1024, ge=40, le=1024, description="Columns lynx lays text out in; wide so paragraphs are not hard-wrapped.")
    timeout_s: float = no_effect(30.0, "Seconds lynx may spend on one page; a page that runs past it is skipped.")
    drop_boilerplate: bool = Field(
        True, description="Remove nav/header/footer/aside and elements whose role/class/id says navigation.")
    min_chars: int = Field(
        20, ge=0, description="Pages whose extracted text is shorter than this many characters give None.")


@dataclass(frozen=True)
class _Equation:
    latex: str
    display: bool


# Markers of math actually in the page (not just a MathJax <script src>); searched in the raw HTML.
_HAS_MATH = re.compile(
    r"<math[\s>]|type=[\"']?math/(?:tex|mml)|class=[\"'][^\"']*\b(?:katex|mwe-math|math|formulaInl|formulaDsp)\b|<mjx-container"
    r"|\\\(.+?\\\)|\\\[.+?\\\]|\$\$.+?\$\$|\\begin\{(?:equation|align|gather|multline|eqnarray)",
    re.IGNORECASE | re.DOTALL)
# TeX delimiters in running text, display forms first; the single-dollar form needs non-space inside both
# dollars and no digit right after the closing one, so prices ("$5 and $10") are not taken for math.
_TEXT_MATH = re.compile(
    r"\$\$(?P<dd>.+?)\$\$|\\\[(?P<db>.+?)\\\]"
    r"|(?P<env>\\begin\{(?P<name>equation|align|gather|multline|eqnarray)(?P<star>\*?)\}.+?\\end\{(?P=name)(?P=star)\})"
    r"|\\\((?P<ip>.+?)\\\)|(?<![\\$\w])\$(?=\S)(?P<id>[^$\n]+?)(?<=\S)\$(?![\d$\w])",
    re.DOTALL)
_BOILERPLATE_TAGS = ("nav", "header", "footer", "aside")
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
_BOILERPLATE_NAMES = re.compile(r"\bnav|menu|footer|sidebar|breadcrumb|cookie|masthead|skip-?link", re.IGNORECASE)
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "canvas", "button", "select", "input",
              "img", "head", "object", "embed")
_MATH_IMG_CLASS = re.compile(r"\b(?:math|tex|latex|formula|mwe-math-fallback-image)", re.IGNORECASE)
_MATH_IMG_SRC = re.compile(r"latex|mathtex|codecogs|/math/|tex2img|mimetex", re.IGNORECASE)
# A placeholder is one plain word, so no renderer splits, wraps or changes it; the whitespace around it is
# captured so block placeholders (display math, code) can be given lines of their own.
_PLACEHOLDER = re.compile(r"(?P<before>[ \t\n]*)QZ(?P<kind>MATH|CODE)(?P<index>\d+)ZQ(?P<after>[ \t\n]*)")


def has_math(html: str) -> bool:
    """Whether the page carries equations in any recognised form (a cheap check on the raw HTML)."""
    return bool(_HAS_MATH.search(html))


def _parse(html: str):
    try:
        return lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):  # empty document, or a str with an encoding declaration
        try:
            return lxml.html.document_fromstring(html.encode("utf-8", errors="replace"))
        except (lxml.etree.ParserError, ValueError):
            return None


def _classes(el) -> str:
    return (el.get("class") or "") if isinstance(el.tag, str) else ""


_WRAPPERS = (re.compile(r"\{\\(?:displaystyle|textstyle)\s*(.*)\}", re.DOTALL),  # Wikipedia
             re.compile(r"\$\$(.*)\$\$|\$(.*)\$|\\\[(.*)\\\]|\\\((.*)\\\)", re.DOTALL))  # alt text (Doxygen)


def _clean_latex(latex: str) -> str:
    """The bare LaTeX: without the `{\\displaystyle ...}` or `$...$` / `\\[...\\]` wrappers, trimmed."""
    latex = latex.strip()
    for wrapper in _WRAPPERS:
        m = wrapper.fullmatch(latex)
        if m:
            latex = next(g for g in m.groups() if g is not None).strip()
    return latex


def _replace(el, token: str, display: bool) -> None:
    """Put `token` where `el` was: a block of its own for display math and code, inline text otherwise."""
    parent = el.getparent()
    if parent is None:
        return
    new = lxml.html.Element("div" if display else "span")
    new.text = token
    new.tail = el.tail
    parent.replace(el, new)


def _attached(el, root) -> bool:
    """Whether `el` is still in the tree (an enclosing math element may have replaced it already)."""
    while el is not None:
        if el is root:
            return True
        el = el.getparent()
    return False


def _mark_math(root) -> list[_Equation]:
    """Replace every equation under `root` by a placeholder word; the equations, in placeholder order."""
    found: list[_Equation] = []

    def mark(el, latex: str | None, display: bool) -> None:
        latex = _clean_latex(latex or "")
        if not _attached(el, root):
            return
        if not latex:  # a rendering with no recoverable source (MathJax SVG output alone): nothing to keep
            el.drop_tree()
            return
        _replace(el, f"QZMATH{len(found)}ZQ", display)
        found.append(_Equation(latex, display))

    def each(xpath: str):
        return list(root.xpath(xpath))

    # MathJax v2 keeps the source in a script and puts its renderings (preview, HTML-CSS/CHTML/SVG output,
    # all with a class starting "MathJax") next to it: the script is the equation, the renderings are copies.
    if root.xpath("//script[starts-with(@type,'math/')]"):
        for el in each("//*[contains(@class,'MathJax')][not(self::mjx-container)]"
                       " | //mjx-container[following-sibling::*[1][self::script[starts-with(@type,'math/')]]]"):
            if _attached(el, root):
                el.drop_tree()
    for el in each("//*[contains(concat(' ',normalize-space(@class),' '),' mwe-math-element ')]"):
        img = el.xpath(".//img[@alt]")
        latex = tex_annotation(el) or (img[0].get("alt") if img else None)
        mark(el, latex, bool(el.xpath(".//*[contains(@class,'display')]")) or "display" in _classes(el))
    for el in each("//*[contains(concat(' ',normalize-space(@class),' '),' katex-display ')]"
                   " | //*[contains(concat(' ',normalize-space(@class),' '),' katex ')]"):
        mark(el, tex_annotation(el), "katex-display" in _classes(el) or "katex-display" in _classes(el.getparent()))
    for el in each("//mjx-container"):
        latex = el.get("data-latex") or el.get("data-tex")
        maths = el.xpath(".//*[local-name()='math']")
        if not latex and maths:
            latex = mathml_to_latex(maths[0])
        label = el.get("aria-label") or ""
        if not latex and re.search(r"\\[A-Za-z]|[\^_{]", label):
            latex = label
        mark(el, latex, el.get("display") in ("true", "block"))
    for el in each("//script[starts-with(@type,'math/')]"):
        kind = el.get("type", "")
        if kind.startswith("math/mml"):
            inner = _parse(f"<html><body>{el.text or ''}</body></html>")
            maths = inner.xpath("//*[local-name()='math']") if inner is not None else []
            mark(el, mathml_to_latex(maths[0]) if maths else None, "display" in (el.text or "")[:200])
        else:
            mark(el, el.text, "mode=display" in kind.replace(" ", ""))
    for el in each("//*[local-name()='math']"):
        mark(el, mathml_to_latex(el), el.get("display") == "block" or el.get("mode") == "display")
    for el in each("//img[@alt]"):
        if _MATH_IMG_CLASS.search(_classes(el)) or _MATH_IMG_SRC.search(el.get("src") or ""):
            # Sphinx imgmath puts display math in <div class="math"><p><img class="math"></p></div>.
            block = el.getparent() is not None and bool(el.xpath("ancestor::div[contains(@class,'math')]"))
            mark(el, el.get("alt"), block or bool(re.search(r"display|Dsp", _classes(el))))
    _mark_text_math(root, found)
    return found


def _mark_text_math(root, found: list[_Equation]) -> None:
    """Replace TeX-delimited math already in the text (`\\(x\\)`, `$$x$$`, ...) by placeholders."""

    def substitute(text: str) -> str:
        def one(m: re.Match) -> str:
            display = m["ip"] is None and m["id"] is None
            latex = _clean_latex(next(g for g in (m["dd"], m["db"], m["env"], m["ip"], m["id"]) if g is not None))
            if not latex:
                return m.group(0)
            found.append(_Equation(latex, display))
            # An inline token even for display math: its own lines are restored when the LaTeX is put back.
            return f"QZMATH{len(found) - 1}ZQ"

        return _TEXT_MATH.sub(one, text)

    skip = {"pre", "code", "script", "style", "textarea", "kbd", "samp"}
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        inside_code = el.tag in skip or any(a.tag in skip for a in el.iterancestors())
        if el.text and not inside_code:
            el.text = substitute(el.text)
        parent = el.getparent()
        tail_in_code = parent is not None and (parent.tag in skip or any(a.tag in skip for a in parent.iterancestors()))
        if el.tail and not tail_in_code:
            el.tail = substitute(el.tail)


def _drop_boilerplate(root) -> None:
    """Remove navigation, banners, sidebars and footers, never an element that holds the main content."""
    keep = {"html", "body", "main", "article"}
    for el in list(root.iter()):
        if not isinstance(el.tag, str) or el.tag in keep or el.getparent() is None or not _attached(el, root):
            continue
        names = f"{el.get('class') or ''} {el.get('id') or ''}"
        if (el.tag in _BOILERPLATE_TAGS or (el.get("role") or "").lower() in _BOILERPLATE_ROLES
                or _BOILERPLATE_NAMES.search(names)):
            if el.get("role") == "main" or el.xpath(".//main | .//article | .//*[@role='main']"):
                continue
            el.drop_tree()


def _mark_code(root) -> list[str]:
    """Replace every `<pre>` block by a placeholder word; the blocks' text, in placeholder order."""
    blocks: list[str] = []
    for el in list(root.iter("pre")):
        if not _attached(el, root):
            continue
        blocks.append(el.text_content().strip("\n"))
        _replace(el, f"QZCODE{len(blocks) - 1}ZQ", display=True)
    return blocks


def equations_in_html(html: str) -> list[str]:
    """The page's equations as LaTeX, in document order (navigation included: this is ground truth)."""
    root = _parse(html)
    return [eq.latex for eq in _mark_math(root)] if root is not None else []


def _normalise(text: str) -> str:
    return re.sub(r"\s+|\\[,;:! ]|\\displaystyle|\\textstyle", "", text)


def equation_preservation(html: str, text: str, min_chars: int = 3) -> float:
    """The fraction of the page's distinct equations found in `text`, whitespace ignored.

    Equations shorter than `min_chars` once normalised (`x`, `n!`) are left out: any text contains them,
    so they say nothing about the extractor. A page with no such equation scores 1.0 (nothing to lose).
    """
    wanted = {n for n in (_normalise(eq) for eq in equations_in_html(html)) if len(n) >= min_chars}
    if not wanted:
        return 1.0
    haystack = _normalise(text or "")
    return sum(eq in haystack for eq in wanted) / len(wanted)


def _tidy(text: str) -> str:
    """Strip the renderer's indentation and trailing spaces, collapse runs of spaces and blank lines."""
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def extract_math_page(html: str, config: MathConfig) -> str | None:
    """The page as text with equations in LaTeX (`$...$` inline, `$$...$$` display) and code blocks'
    line breaks kept; None when the page is unparseable, times out in the renderer, or has too little text."""
    root = _parse(html)
    if root is None:
        return None
    equations = _mark_math(root)
    if config.drop_boilerplate:
        _drop_boilerplate(root)
    code = _mark_code(root)
    for el in list(root.iter(*_DROP_TAGS)):
        if el.getparent() is not None:
            el.drop_tree()
    page = lxml.html.tostring(root, encoding="unicode")
    try:
        text = lynx_dump(page, config.lynx_width, config.timeout_s) if config.renderer == "lynx" else builtin_text(page)
    except RenderTimeout:
        return None

    def put_back(m: re.Match) -> str:
        index = int(m["index"])
        if m["kind"] == "CODE":
            block = code[index] if index < len(code) else ""
        else:
            eq = equations[index] if index < len(equations) else _Equation("", False)
            if not eq.display:
                return m["before"] + "$" + re.sub(r"\s+", " ", eq.latex) + "$" + m["after"]
            block = f"$${eq.latex}$$"
        return f"\n\n{block}\n\n"

    text = _PLACEHOLDER.sub(put_back, _tidy(text)).strip()
    return text if len(text) >= config.min_chars else None
