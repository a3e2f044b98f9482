"""The default extractor, `resiliparse_rules`: page chrome named by tag, ARIA role, class or id is skipped; the
article, inline runs that happen to carry such a name, and names that only contain one (`canvas`) are kept."""

from __future__ import annotations

from factory.curate.filters import extract_main_text

ARTICLE = ("The reader of this sentence is looking at the one paragraph that every extractor must keep, whatever "
           "the page around it looks like, because it carries the article.")

PAGE = f"""<!DOCTYPE html><html><head><title>T</title></head><body>
<a class="skip-link" href="#main">Skip to the main content</a>
<header><h1>Example Site Name</h1></header>
<nav><a href="/">Home page link</a> <a href="/about">About us link</a></nav>
<div role="navigation">Role navigation block text</div>
<div class="site-footer-wrapper">Wrapper footer text here</div>
<div id="section-toc">Table of contents entry text</div>
<ul class="Menu main">Menu item text here</ul>
<div class="groupheader">Doxygen group header text</div>
<main>
  <h2>The article heading</h2>
  <p>{ARTICLE}</p>
  <p><b class="header">Run-in heading.</b> Text that follows the bold run-in heading stays in the article.</p>
  <div class="canvas-area">Text in a block whose class merely contains the letters of nav.</div>
</main>
<aside>Aside panel text here</aside>
<footer>Copyright footer text here</footer>
</body></html>"""


def test_chrome_skipped_and_content_kept():
    text = extract_main_text(PAGE, "resiliparse_rules")
    for kept in (ARTICLE, "The article heading", "Run-in heading.", "stays in the article",
                 "merely contains the letters of nav"):
        assert kept in text, kept
    for dropped in ("Skip to the main content", "Example Site Name", "Home page link", "Role navigation block",
                    "Wrapper footer", "Table of contents entry", "Menu item text", "Doxygen group header",
                    "Aside panel", "Copyright footer"):
        assert dropped not in text, dropped


def test_empty_and_bare_pages():
    assert extract_main_text("", "resiliparse_rules").strip() == ""
    assert extract_main_text("<p>just a paragraph</p>", "resiliparse_rules").strip() == "just a paragraph"
