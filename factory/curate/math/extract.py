"""A math page to text: equations marked, navigation dropped, the rest rendered, equations put back as LaTeX."""

from __future__ import annotations

import re

import lxml.html

from factory.curate.math.config import MathConfig
from factory.curate.math.equations import Equation, is_attached, mark_math, parse_html, replace_with_token
from factory.curate.math.render import RenderTimeout, builtin_text, lynx_dump

_BOILERPLATE_TAGS = ("nav", "header", "footer", "aside")
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
_BOILERPLATE_NAMES = re.compile(r"\bnav|menu|footer|sidebar|breadcrumb|cookie|masthead|skip-?link", re.IGNORECASE)
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "canvas", "button", "select", "input",
              "img", "head", "object", "embed")
# captured so block placeholders (display math, code) can be given lines of their own.
_PLACEHOLDER = re.compile(r"(?P<before>[ \t\n]*)QZ(?P<kind>MATH|CODE)(?P<index>\d+)ZQ(?P<after>[ \t\n]*)")



def _drop_boilerplate(root) -> None:
    """Remove navigation, banners, sidebars and footers, never an element that holds the main content."""
    keep = {"html", "body", "main", "article"}
    for el in list(root.iter()):
        if not isinstance(el.tag, str) or el.tag in keep or el.getparent() is None or not is_attached(el, root):
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
    # Doxygen lays code fragments out as one <div class="line"> per line, not as <pre>
    for el in list(root.xpath("//pre | //div[contains(concat(' ',normalize-space(@class),' '),' fragment ')]")):
        if not is_attached(el, root):
            continue
        if el.tag == "pre":
            blocks.append(el.text_content().strip("\n"))
        else:
            lines = el.xpath("./div[contains(concat(' ',normalize-space(@class),' '),' line ')]")
            blocks.append("\n".join(line.text_content().rstrip() for line in lines) if lines else el.text_content().strip("\n"))
        replace_with_token(el, f"QZCODE{len(blocks) - 1}ZQ", display=True)
    return blocks


def _tidy(text: str) -> str:
    """Strip the renderer's indentation and trailing spaces, collapse runs of spaces and blank lines."""
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def extract_math_page(html: str, config: MathConfig) -> str | None:
    """The page as text with equations in LaTeX (`$...$` inline, `$$...$$` display) and code blocks'
    line breaks kept; None when the page is unparseable, times out in the renderer, or has too little text."""
    root = parse_html(html)
    if root is None:
        return None
    equations = mark_math(root)
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
            # fenced as Markdown (as Nemotron-CC-Math writes code), so later steps can tell code from prose
            block = f"```\n{code[index]}\n```" if index < len(code) else ""
        else:
            eq = equations[index] if index < len(equations) else Equation("", False)
            if not eq.display:
                return m["before"] + "$" + re.sub(r"\s+", " ", eq.latex) + "$" + m["after"]
            block = f"$${eq.latex}$$"
        return f"\n\n{block}\n\n"

    text = _PLACEHOLDER.sub(put_back, _tidy(text)).strip()
    return text if len(text) >= config.min_chars else None
