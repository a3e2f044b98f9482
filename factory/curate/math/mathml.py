"""MathML to LaTeX: a small converter for the presentation-MathML elements that web pages use.

`mathml_to_latex(math_element)` prefers a TeX annotation (`<annotation encoding="application/x-tex">`,
which KaTeX, Wikipedia and MathJax's assistive MathML carry) and otherwise converts the presentation
markup: mi, mn, mo, mtext, mrow, mfrac, msup, msub, msubsup, msqrt, mroot, mover, munder, munderover,
mtable, mfenced. Unknown elements convert their children, so nothing is silently dropped.
"""

from __future__ import annotations

import re

# Unicode symbols as they appear in MathML token elements, and the LaTeX command for each.
_SYMBOLS = {
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\epsilon", "ϵ": r"\epsilon",
    "ζ": r"\zeta", "η": r"\eta", "θ": r"\theta", "ι": r"\iota", "κ": r"\kappa", "λ": r"\lambda",
    "μ": r"\mu", "ν": r"\nu", "ξ": r"\xi", "π": r"\pi", "ρ": r"\rho", "σ": r"\sigma", "τ": r"\tau",
    "υ": r"\upsilon", "φ": r"\phi", "ϕ": r"\phi", "χ": r"\chi", "ψ": r"\psi", "ω": r"\omega",
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Ξ": r"\Xi", "Π": r"\Pi",
    "Σ": r"\Sigma", "Φ": r"\Phi", "Ψ": r"\Psi", "Ω": r"\Omega",
    "∑": r"\sum", "∏": r"\prod", "∫": r"\int", "∮": r"\oint", "∞": r"\infty", "∂": r"\partial",
    "∇": r"\nabla", "×": r"\times", "·": r"\cdot", "⋅": r"\cdot", "÷": r"\div", "±": r"\pm", "∓": r"\mp",
    "≤": r"\le", "≥": r"\ge", "≠": r"\ne", "≈": r"\approx", "≡": r"\equiv", "∼": r"\sim", "∝": r"\propto",
    "∈": r"\in", "∉": r"\notin", "⊂": r"\subset", "⊆": r"\subseteq", "∪": r"\cup", "∩": r"\cap",
    "∅": r"\emptyset", "∀": r"\forall", "∃": r"\exists", "¬": r"\neg", "∧": r"\wedge", "∨": r"\vee",
    "→": r"\to", "←": r"\leftarrow", "⇒": r"\Rightarrow", "⇔": r"\Leftrightarrow", "↦": r"\mapsto",
    "…": r"\ldots", "⋯": r"\cdots", "ℝ": r"\mathbb{R}", "ℕ": r"\mathbb{N}", "ℤ": r"\mathbb{Z}",
    "ℚ": r"\mathbb{Q}", "ℂ": r"\mathbb{C}", "−": "-", "∗": "*", "′": "'", "″": "''", "\u2061": "",
    "\u2062": "", "\u2063": ",", "\u00a0": " ", "{": r"\{", "}": r"\}", "⟨": r"\langle", "⟩": r"\rangle",
}
_FUNCTIONS = {"sin", "cos", "tan", "cot", "sec", "csc", "sinh", "cosh", "tanh", "log", "ln", "exp",
              "lim", "max", "min", "sup", "inf", "det", "arg", "deg", "gcd", "arcsin", "arccos", "arctan"}
# mover/munder accents: the operator drawn above (or below) and the LaTeX accent command.
_ACCENTS = {"^": r"\hat", "ˆ": r"\hat", "¯": r"\overline", "‾": r"\overline", "_": r"\underline",
            "~": r"\tilde", "˜": r"\tilde", "→": r"\vec", "⃗": r"\vec", "˙": r"\dot", "¨": r"\ddot",
            "⏞": r"\overbrace", "⏟": r"\underbrace"}
_BIG_OPERATORS = {r"\sum", r"\prod", r"\int", r"\oint", r"\lim", r"\max", r"\min", r"\sup", r"\inf"}
_TEX_ENCODINGS = {"application/x-tex", "tex", "latex", "application/x-latex", "text/latex"}


def _local(tag: object) -> str:
    """The element name without its XML namespace (`{http://www.w3.org/1998/Math/MathML}mi` -> `mi`)."""
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _symbols(text: str) -> str:
    return "".join(_SYMBOLS.get(ch, ch) for ch in text)


def _group(latex: str) -> str:
    """Brace a sub/superscript base or argument unless it is a single character or command."""
    return latex if re.fullmatch(r"[A-Za-z0-9]|\\[A-Za-z]+", latex) else "{" + latex + "}"


def tex_annotation(element) -> str | None:
    """The TeX source carried by an `<annotation encoding="application/x-tex">` below `element`, if any."""
    for node in element.iter():
        if _local(node.tag) == "annotation" and (node.get("encoding") or "").lower() in _TEX_ENCODINGS:
            text = (node.text or "").strip()
            if text:
                return text
    return None


def mathml_to_latex(element) -> str:
    """LaTeX for a MathML `<math>` element (or any MathML subtree): its TeX annotation if present."""
    return tex_annotation(element) or _convert(element).strip()


def _children(element) -> list:
    return [c for c in element if isinstance(c.tag, str)]


def _join(element) -> str:
    parts = [_convert(c) for c in _children(element)]
    out = ""
    for part in parts:
        # A space only where two commands or words would otherwise fuse (`\alpha x`, not `\alphax`).
        if out and re.search(r"\\[A-Za-z]+$", out) and re.match(r"[A-Za-z]", part):
            out += " "
        out += part
    return out


def _convert(element) -> str:
    name = _local(element.tag)
    kids = _children(element)
    text = (element.text or "").strip()
    if name in ("annotation", "annotation-xml", "none", "mprescripts", "mphantom", "mspace", "maligngroup"):
        return ""
    if name == "semantics":
        return tex_annotation(element) or (_convert(kids[0]) if kids else "")
    if name in ("mi", "mo") and text in _FUNCTIONS:  # `lim` may come as an operator
        return "\\" + text
    if name == "mi":
        if len(text) > 1 and text not in _SYMBOLS:
            return r"\mathrm{" + text + "}"
        return _symbols(text)
    if name == "mn":
        return _symbols(text)
    if name == "mo":
        return _symbols(text) if text not in ("(", ")", "[", "]", "|") else text
    if name in ("mtext", "ms"):
        return r"\text{" + text + "}" if text else ""
    if name == "mfrac" and len(kids) >= 2:
        return r"\frac{" + _convert(kids[0]) + "}{" + _convert(kids[1]) + "}"
    if name == "msqrt":
        return r"\sqrt{" + _join(element) + "}"
    if name == "mroot" and len(kids) >= 2:
        return r"\sqrt[" + _convert(kids[1]) + "]{" + _convert(kids[0]) + "}"
    if name in ("msup", "msub") and len(kids) >= 2:
        op = "^" if name == "msup" else "_"
        return _group(_convert(kids[0])) + op + "{" + _convert(kids[1]) + "}"
    if name in ("msubsup", "munderover") and len(kids) >= 3:
        return _group(_convert(kids[0])) + "_{" + _convert(kids[1]) + "}^{" + _convert(kids[2]) + "}"
    if name in ("mover", "munder") and len(kids) >= 2:
        base, mark = _convert(kids[0]), _convert(kids[1])
        mark_text = (kids[1].text or "").strip()
        if mark_text in _ACCENTS and _local(kids[1].tag) == "mo":
            return _ACCENTS[mark_text] + "{" + base + "}"
        if base in _BIG_OPERATORS:
            return base + ("^{" if name == "mover" else "_{") + mark + "}"
        return ("\\overset{" if name == "mover" else "\\underset{") + mark + "}{" + base + "}"
    if name == "mtable":
        rows = []
        for row in kids:
            cells = [_convert(c) for c in _children(row)] if _local(row.tag) in ("mtr", "mlabeledtr") else [_convert(row)]
            rows.append(" & ".join(cells))
        return r"\begin{matrix}" + r" \\ ".join(rows) + r"\end{matrix}"
    if name == "mfenced":
        open_, close = element.get("open", "("), element.get("close", ")")
        sep = element.get("separators", ",").strip()[:1] or ","
        return r"\left" + open_ + sep.join(_convert(k) for k in kids) + r"\right" + close
    if name == "menclose" and "radical" in (element.get("notation") or ""):
        return r"\sqrt{" + _join(element) + "}"
    # mrow, mstyle, mpadded, menclose, mtd, math and anything unknown: the children in order.
    return _symbols(text) + _join(element) if kids else _symbols(text)
