"""The default extractor, `resiliparse_rules`: page chrome named by tag, ARIA role, class or id is skipped; the
article, inline runs that happen to carry such a name, and names that only contain one (`canvas`) are kept. The
extraction step bounds each page's time and memory in its worker process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from datatrove.data import Document

from factory.curate.filters import Extract, extract_main_text

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


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the memory limit needs Linux's /proc and RLIMIT_AS")
def test_a_page_past_the_memory_limit_is_counted_not_waited_for():
    # misnested formatting tags, reconstructed at every block: the tree grows quadratically (58 KB took 3.4 GB, 24 s)
    hostile = "<html><body>" + "".join(f"<b id={i}><p>w" for i in range(4000)) + "</body></html>"
    step = Extract("resiliparse_rules", timeout=60, memory_mb=256)
    docs = [Document(text=hostile, id="hostile", metadata={}), Document(text=PAGE, id="good", metadata={})]
    start = time.perf_counter()
    out = list(step.run(iter(docs)))
    assert time.perf_counter() - start < 20
    assert [d.id for d in out] == ["good"] and ARTICLE in out[0].text  # a fresh worker takes the next page
    assert step.stats["out_of_memory"].total == 1


def test_an_extractor_exception_is_counted_and_the_worker_lives_on(monkeypatch):
    def broken(self, html):
        if "boom" in html:
            raise ValueError("boom")
        return extract_main_text(html, self.extractor), self.extractor

    monkeypatch.setattr(Extract, "extract", broken)
    step = Extract("resiliparse_rules", timeout=30)
    out = list(step.run(iter([Document(text="<p>boom</p>", id="a", metadata={}), Document(text=PAGE, id="b", metadata={})])))
    assert [d.id for d in out] == ["b"] and step.stats["clean_error"].total == 1
