"""Math-aware extraction (Nemotron-CC-Math): web pages with equations in, text with LaTeX out.

Generic extractors (trafilatura, justext) drop most equations because MathJax, KaTeX and MathML live in
scripts, hidden spans and images. This module first finds every equation in the page and replaces it by
a placeholder word, drops navigation and footers, renders the rest to text with the builtin lxml renderer
(the default: pure Python, so the same text on every machine) or `lynx -dump` (layout-aware, a system
package), then puts the equations back as `$...$` (inline) and `$$...$$` (display), and code blocks back
verbatim as Markdown fences. Modules: `config` (settings), `equations` (finding equations, and measuring
how many survive), `render` (HTML to text), `extract` (the whole page), `mathml` (MathML to LaTeX).

Then, in the curate stage, the chain built for math instead of the prose heuristics (Nemotron-CC-Math):
`chain` (language id and Gopher rules on the prose with LaTeX and code masked by `mask`, math thresholds),
`cleanup` (optional LLM rewrite through the generator interface, prompt in `prompts/cleanup.txt`), dedup and
decontamination as for prose, and `classifier` (the math quality classifier after FineMath, trained by the
quality stage into its artifact). `paths` counts math and prose pages through every step.

    from factory.curate.math import MathConfig, extract_math_page, has_math
    text = extract_math_page(html, MathConfig()) if has_math(html) else None
"""

from factory.curate.math.config import MathConfig
from factory.curate.math.equations import equation_preservation, equations_in_html, has_math, stage_preservation
from factory.curate.math.extract import extract_math_page

__all__ = ["MathConfig", "has_math", "extract_math_page", "equations_in_html", "equation_preservation",
           "stage_preservation"]
