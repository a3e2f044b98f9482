"""Math-aware extraction on hand-written HTML: every math flavour comes back as the expected LaTeX."""

from __future__ import annotations

import shutil

import lxml.html
import pytest

from factory.curate.math import MathConfig, equation_preservation, equations_in_html, extract_math_page, has_math
from factory.curate.math.mathml import mathml_to_latex
from factory.errors import InputError

RENDERERS = [
    pytest.param("lynx", marks=pytest.mark.skipif(shutil.which("lynx") is None, reason="Debian package lynx not installed")),
    "builtin",
]


def _page(body: str) -> str:
    return f"<html><head><title>t</title></head><body>{body}</body></html>"


def _latex(mathml: str) -> str:
    return mathml_to_latex(lxml.html.fragment_fromstring(mathml))


@pytest.mark.parametrize(("mathml", "latex"), [
    ("<math><mfrac><mi>a</mi><mrow><mi>b</mi><mo>+</mo><mn>1</mn></mrow></mfrac></math>", r"\frac{a}{b+1}"),
    ("<math><msup><mi>x</mi><mn>2</mn></msup></math>", "x^{2}"),
    ("<math><msub><mi>a</mi><mi>n</mi></msub></math>", "a_{n}"),
    ("<math><msubsup><mi>x</mi><mi>i</mi><mn>2</mn></msubsup></math>", "x_{i}^{2}"),
    ("<math><msqrt><mi>x</mi></msqrt><mo>≤</mo><mroot><mi>y</mi><mn>3</mn></mroot></math>", r"\sqrt{x}\le\sqrt[3]{y}"),
    ("<math><munderover><mo>∑</mo><mrow><mi>i</mi><mo>=</mo><mn>1</mn></mrow><mi>n</mi></munderover>"
     "<msub><mi>α</mi><mi>i</mi></msub></math>", r"\sum_{i=1}^{n}\alpha_{i}"),
    ("<math><mover><mi>v</mi><mo>→</mo></mover><mo>,</mo><munder><mo>lim</mo><mi>n</mi></munder></math>", r"\vec{v},\lim_{n}"),
    ("<math><mi>sin</mi><mi>θ</mi><mtext>for all</mtext></math>", r"\sin\theta\text{for all}"),
    ("<math><mtable><mtr><mtd><mn>1</mn></mtd><mtd><mn>0</mn></mtd></mtr>"
     "<mtr><mtd><mn>0</mn></mtd><mtd><mn>1</mn></mtd></mtr></mtable></math>", r"\begin{matrix}1 & 0 \\ 0 & 1\end{matrix}"),
    # A TeX annotation wins over the presentation markup.
    ("<math><semantics><mrow><mi>E</mi></mrow><annotation encoding='application/x-tex'>E = mc^2</annotation>"
     "</semantics></math>", "E = mc^2"),
])
def test_mathml_to_latex(mathml, latex):
    assert _latex(mathml) == latex


FLAVOURS = [
    # (html body, expected LaTeX, display?)
    ('<p>A <span class="MathJax_Preview">x2</span><span class="MathJax">x2</span>'
     '<script type="math/tex">x^2</script> b</p>', "x^2", False),
    ('<div class="MathJax_Display">rendered</div><script type="math/tex; mode=display">\\int_0^1 f</script>',
     r"\int_0^1 f", True),
    ('<p>K <span class="katex"><span class="katex-mathml"><math><semantics><mrow><mi>y</mi></mrow>'
     '<annotation encoding="application/x-tex">y = \\frac{1}{2}</annotation></semantics></math></span>'
     '<span class="katex-html" aria-hidden="true">y=1/2</span></span> done</p>', r"y = \frac{1}{2}", False),
    ('<span class="katex-display"><span class="katex"><math><semantics><mi>z</mi><annotation '
     'encoding="application/x-tex">\\sum_k z_k</annotation></semantics></math></span></span>', r"\sum_k z_k", True),
    ('<p><mjx-container class="MathJax" jax="CHTML" data-latex="a+b"><mjx-math>a+b</mjx-math></mjx-container></p>',
     "a+b", False),
    ('<mjx-container class="MathJax" jax="CHTML" display="true"><mjx-math>glyphs</mjx-math><mjx-assistive-mml>'
     '<math display="block"><msup><mi>e</mi><mi>x</mi></msup></math></mjx-assistive-mml></mjx-container>', "e^{x}", True),
    ('<p>Then <math><mfrac><mn>1</mn><mi>n</mi></mfrac></math> tends to zero.</p>', r"\frac{1}{n}", False),
    ('<p><span class="mwe-math-element"><span class="mwe-math-mathml-inline" style="display: none;"><math>'
     '<semantics><mi>x</mi><annotation encoding="application/x-tex">{\\displaystyle x^{2}+1}</annotation>'
     '</semantics></math></span><img class="mwe-math-fallback-image-inline" alt="{\\displaystyle x^{2}+1}" '
     'src="x.svg"></span></p>', "x^{2}+1", False),
    ('<p>Sphinx <img class="math" src="_images/math/ab.png" alt="\\alpha_1"/> inline.</p>', r"\alpha_1", False),
    ('<div class="math"><p><img src="_images/math/cd.png" alt="\\beta^2 = 4"/></p></div>', r"\beta^2 = 4", True),
    ('<p>Doxygen <img class="formulaInl" alt="$\\mu(x)$" src="form_0.png"/></p>', r"\mu(x)", False),
    ('<p>See \\(a^2 + b^2\\) here.</p>', "a^2 + b^2", False),
    ('<div class="math">\\[c^2 = a^2 + b^2\\]</div>', "c^2 = a^2 + b^2", True),
    ('<p>Also $$\\oint E$$ and $\\gamma_0$ inline.</p>', r"\oint E", True),
]


@pytest.mark.parametrize(("body", "latex", "display"), FLAVOURS)
def test_every_flavour_is_found_once(body, latex, display):
    html = _page(body)
    assert has_math(html)
    assert equations_in_html(html)[0] == latex
    if "$$" not in body:
        assert len(equations_in_html(html)) == 1  # renderings next to the source are not counted again


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize(("body", "latex", "display"), FLAVOURS)
def test_every_flavour_round_trips(body, latex, display, renderer):
    text = extract_math_page(_page(body), MathConfig(renderer=renderer, min_chars=0))
    if display:
        assert f"\n$${latex}$$\n" in f"\n{text}\n"
    else:
        assert f"${latex}$" in text and f"$${latex}$$" not in text
    assert "QZMATH" not in text and "rendered" not in text and "glyphs" not in text and "x2" not in text


def test_prices_and_code_are_not_math():
    html = _page("<p>It costs $5 and $10.</p><pre>echo $HOME $PATH</pre><code>\\(not math\\)</code>")
    assert equations_in_html(html) == []
    assert not has_math("<p>It costs $5 and $10.</p>")
    assert "\\alpha" in equations_in_html(_page("<p>$\\alpha$ and $x$.</p>"))[0]


ARTICLE = """<html><body>
<nav class="topnav"><a href="/">Home</a> <a href="/blog">Blog archive</a></nav>
<div class="breadcrumbs">Site / Math / Euler</div>
<div id="main-content" role="main">
<h1>Euler's identity</h1>
<p>Euler's identity <script type="math/tex">e^{i\\pi} + 1 = 0</script> links five constants.</p>
<p>Its general form is</p>
<script type="math/tex; mode=display">e^{i x} = \\cos x + i \\sin x</script>
<pre>def euler(x):
    return cmath.exp(1j * x)

print(euler(3.14))</pre>
<p>That is all.</p>
</div>
<div class="sidebar">Related posts: Pythagoras</div>
<div id="cookie-banner">We use cookies</div>
<footer>Copyright 2026 Example Corp</footer>
</body></html>"""


@pytest.mark.parametrize("renderer", RENDERERS)
def test_page_keeps_prose_math_and_code_and_drops_navigation(renderer):
    text = extract_math_page(ARTICLE, MathConfig(renderer=renderer))
    assert "Euler's identity $e^{i\\pi} + 1 = 0$ links five constants." in text
    assert "\n\n$$e^{i x} = \\cos x + i \\sin x$$\n\n" in text
    assert "def euler(x):\n    return cmath.exp(1j * x)\n\nprint(euler(3.14))" in text
    assert "That is all." in text
    for boilerplate in ("Blog archive", "Site / Math", "Related posts", "cookies", "Copyright"):
        assert boilerplate not in text
    assert equation_preservation(ARTICLE, text) == 1.0


def test_equation_preservation_counts_distinct_equations():
    html = _page("<p>\\(a+b\\), \\(c+d\\), \\(a+b\\) and \\(x\\)</p>")
    assert equation_preservation(html, "we have a + b only") == 0.5  # `x` is too short to tell anything
    assert equation_preservation(html, "$a+b$ $c + d$") == 1.0
    assert equation_preservation(_page("<p>no math</p>"), "") == 1.0


def test_nothing_useful_gives_none():
    assert extract_math_page("", MathConfig(renderer="builtin")) is None
    assert extract_math_page(_page("<nav>menu only</nav>"), MathConfig(renderer="builtin")) is None


def test_missing_lynx_names_the_package(monkeypatch):
    monkeypatch.setattr("factory.curate.math.render.shutil.which", lambda name: None)
    with pytest.raises(InputError, match="Debian package 'lynx'"):
        extract_math_page(ARTICLE, MathConfig(renderer="lynx"))


def test_has_math_prefilter_decides_as_the_regex():
    """`has_math` rules pages out by a lower-cased substring search before its case-insensitive regex; it must
    never say no where the regex says yes, including the letters `re` matches case-insensitively that
    `str.lower` does not map (dotted and dotless i, long s)."""
    from pathlib import Path

    from factory.curate.math.equations import _HAS_MATH

    smoke = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"
    pages = [p.read_text(encoding="utf-8") for p in sorted(smoke.glob("*.htm*"))]
    odd = ["<mjx-contaİner>", "<mjx-contaıner>", "a \\BEGİN{equation}", "<p class='formulaDſp'>x</p>",
           "<span CLASS='KATEX'>", "<MATH>", "x \\( y \\) z", "a \\[ b \\] c", "$$x$$", "type=Math/TeX",
           "plain text at $5 and $10", "no equations here: mathematics is a word", "<p class='mathematics'>x</p>", ""]
    got = [has_math(p) for p in pages + odd]
    assert got == [bool(_HAS_MATH.search(p)) for p in pages + odd]
    assert sum(got[:len(pages)]) >= 3 and got[len(pages):len(pages) + 10] == [True] * 10
