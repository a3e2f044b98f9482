"""Finding equations in a page: every recognised form replaced by a placeholder word, kept as LaTeX.

Recognised math: MathML `<math>` (its TeX annotation when present, else converted), MathJax v2
`<script type="math/tex">` (`; mode=display`), MathJax v3/v4 `mjx-container` (`data-latex`, assistive
MathML), KaTeX (`.katex` with its TeX annotation), Wikipedia `.mwe-math-element`, images with LaTeX alt
text (Sphinx imgmath `img.math`, `mwe-math-fallback-image`, LaTeX-rendering services), and `\\(...\\)`,
`\\[...\\]`, `$$...$$`, `$...$` and `\\begin{equation}` environments already in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.etree
import lxml.html

from factory.curate.math.mathml import mathml_to_latex, tex_annotation


@dataclass(frozen=True)
class Equation:
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
_MATH_IMG_CLASS = re.compile(r"\b(?:math|tex|latex|formula|mwe-math-fallback-image)", re.IGNORECASE)
_MATH_IMG_SRC = re.compile(r"latex|mathtex|codecogs|/math/|tex2img|mimetex", re.IGNORECASE)
# A placeholder is one plain word, so no renderer splits, wraps or changes it; the whitespace around it is


# Every match of _HAS_MATH contains one of these, ignoring case: a page without any cannot match, and most pages
# are ruled out by a lower-cased substring search (C loops) instead of the case-insensitive regex (Python's
# `re` tries each alternative at each position). Under IGNORECASE `re` also matches "i" with U+0130 and U+0131
# and "s" with U+017F, which `str.lower` does not map to them: they are mapped first.
_MATH_ANCHORS = ("math", "katex", "formulainl", "formuladsp", "<mjx-container", "\\(", "\\[", "$$", "\\begin{")
_RE_IGNORECASE_EXTRA = (("\u0130", "i"), ("\u0131", "i"), ("\u017f", "s"))


def has_math(html: str) -> bool:
    """Whether the page carries equations in any recognised form (a cheap check on the raw HTML)."""
    lowered = html
    if not html.isascii():
        for char, letter in _RE_IGNORECASE_EXTRA:
            lowered = lowered.replace(char, letter)
    lowered = lowered.lower()
    if not any(anchor in lowered for anchor in _MATH_ANCHORS):
        return False
    return bool(_HAS_MATH.search(html))


def parse_html(html: str):
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


def replace_with_token(el, token: str, display: bool) -> None:
    """Put `token` where `el` was: a block of its own for display math and code, inline text otherwise."""
    parent = el.getparent()
    if parent is None:
        return
    new = lxml.html.Element("div" if display else "span")
    new.text = token
    new.tail = el.tail
    parent.replace(el, new)


def is_attached(el, root) -> bool:
    """Whether `el` is still in the tree (an enclosing math element may have replaced it already)."""
    while el is not None:
        if el is root:
            return True
        el = el.getparent()
    return False


def mark_math(root) -> list[Equation]:
    """Replace every equation under `root` by a placeholder word; the equations, in placeholder order."""
    found: list[Equation] = []

    def mark(el, latex: str | None, display: bool) -> None:
        latex = _clean_latex(latex or "")
        if not is_attached(el, root):
            return
        if not latex:  # a rendering with no recoverable source (MathJax SVG output alone): nothing to keep
            el.drop_tree()
            return
        replace_with_token(el, f"QZMATH{len(found)}ZQ", display)
        found.append(Equation(latex, display))

    def each(xpath: str):
        return list(root.xpath(xpath))

    # MathJax v2 keeps the source in a script and puts its renderings (preview, HTML-CSS/CHTML/SVG output,
    # all with a class starting "MathJax") next to it: the script is the equation, the renderings are copies.
    if root.xpath("//script[starts-with(@type,'math/')]"):
        for el in each("//*[contains(@class,'MathJax')][not(self::mjx-container)]"
                       " | //mjx-container[following-sibling::*[1][self::script[starts-with(@type,'math/')]]]"):
            if is_attached(el, root):
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
            inner = parse_html(f"<html><body>{el.text or ''}</body></html>")
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


def _mark_text_math(root, found: list[Equation]) -> None:
    """Replace TeX-delimited math already in the text (`\\(x\\)`, `$$x$$`, ...) by placeholders."""

    def substitute(text: str) -> str:
        def one(m: re.Match) -> str:
            display = m["ip"] is None and m["id"] is None
            latex = _clean_latex(next(g for g in (m["dd"], m["db"], m["env"], m["ip"], m["id"]) if g is not None))
            if not latex:
                return m.group(0)
            found.append(Equation(latex, display))
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


def equations_in_html(html: str) -> list[str]:
    """The page's equations as LaTeX, in document order (navigation included: this is ground truth)."""
    root = parse_html(html)
    return [eq.latex for eq in mark_math(root)] if root is not None else []


def _normalise(text: str) -> str:
    return re.sub(r"\s+|\\[,;:! ]|\\displaystyle|\\textstyle", "", text)


def equation_preservation(html: str, text: str, min_chars: int = 3) -> float:
    """The fraction of the page's distinct equations found in `text`, whitespace ignored.

    Equations shorter than `min_chars` once normalised (`x`, `n!`) are left out: any text contains them,
    so they say nothing about the extractor. A page with no such equation scores 1.0 (nothing to lose).
    """
    wanted = telling_equations(html, min_chars)
    if not wanted:
        return 1.0
    haystack = _normalise(text or "")
    return sum(eq in haystack for eq in wanted) / len(wanted)


def telling_equations(html: str, min_chars: int = 3) -> set[str]:
    """The page's distinct equations, whitespace-normalised, of at least `min_chars` (what preservation counts)."""
    return {n for n in (_normalise(eq) for eq in equations_in_html(html)) if len(n) >= min_chars}


@dataclass(frozen=True)
class StagePreservation:
    """Equations of input pages found again in the curated corpus: the whole stage's check, not the extractor's."""

    pages: int
    pages_kept: int
    equations: int
    equations_kept: int
    per_page: dict[str, tuple[int, int]]  # page name -> (equations kept, equations)

    @property
    def fraction(self) -> float:
        return self.equations_kept / self.equations if self.equations else 1.0


def stage_preservation(pages: dict[str, str], corpus: dict[str, str], min_chars: int = 3) -> StagePreservation:
    """Equations of each input page (`pages`: name -> HTML) found in the corpus document made from it
    (`corpus`: name -> text; a page with no document there lost all its equations), counted over all pages."""
    per_page = {}
    for name, html in pages.items():
        wanted = telling_equations(html, min_chars)
        haystack = _normalise(corpus.get(name, ""))
        per_page[name] = (sum(eq in haystack for eq in wanted) if name in corpus else 0, len(wanted))
    return StagePreservation(pages=len(pages), pages_kept=sum(name in corpus for name in pages),
                             equations=sum(n for _, n in per_page.values()),
                             equations_kept=sum(k for k, _ in per_page.values()), per_page=per_page)
