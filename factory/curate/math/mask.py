"""The prose of a math page: its text with LaTeX and code masked, for the heuristics that measure words.

The math path writes equations as `$...$` (inline) and `$$...$$` (display) and code as Markdown fences
(```` ``` ````). Gopher-style rules count a word without a letter as junk and a repeated n-gram as
repetition, so on raw math text they drop good pages: `\\frac{1}{2}` is not a word, and a page that uses
`$x$` fifty times repeats itself. The math chain measures those rules on `prose_view(text)` instead:

    display math and code blocks  ->  removed (their lines are not prose)
    inline math                   ->  one placeholder word, so "where $x > 0$ holds" stays a sentence

    from factory.curate.math.mask import latex_spans, prose_view
    prose_view("Let $x$ be real.\\n\\n$$x^2 \\ge 0$$")   # -> "Let formula be real."
"""

from __future__ import annotations

import re

# Display math first, then inline `$...$` on one line; `\$` (an escaped dollar) is not a delimiter.
LATEX_SPAN = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$(?!\$)[^$\n]+?(?<!\\)\$", re.DOTALL)
# A Markdown code fence: ``` on a line of its own (an info string allowed), up to the closing ```.
CODE_FENCE = re.compile(r"^```[^\n]*\n.*?^```[ \t]*$", re.DOTALL | re.MULTILINE)
INLINE_WORD = "formula"


def latex_spans(text: str) -> list[str]:
    """The `$...$` / `$$...$$` spans of `text` outside code blocks, delimiters included, in order."""
    return LATEX_SPAN.findall(CODE_FENCE.sub("", text))


def prose_view(text: str, inline_word: str = INLINE_WORD) -> str:
    """`text` with code blocks and display math removed and inline math replaced by `inline_word`."""
    text = CODE_FENCE.sub("", text)
    text = LATEX_SPAN.sub(lambda m: "" if m.group(0).startswith("$$") else inline_word, text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
