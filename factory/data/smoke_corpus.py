"""Generate the smoke HTML corpus: a few hundred web pages of real English prose in realistic boilerplate.

    python -m factory.data.smoke_corpus examples/data/smoke-html

The prose is the documentation that ships with Python itself (docstrings of a fixed list of standard-library
modules, functions and classes, prose paragraphs only), so a tiny language model trained on it learns real
English. Each page wraps a few paragraphs in a site's navigation, cookie banner, sidebar and footer, so text
extraction has something to remove. Planted on purpose, so that every curate filter removes something:

- exact duplicates (the same file twice, and the same article on a second site with other boilerplate),
- near-duplicates (the same article with a sentence dropped and a few words changed),
- non-English pages (original German, French and Spanish prose, `foreign_text.py`),
- junk pages (a few words only, mostly symbols, lists of links, one line repeated, keyword stuffing).

Besides the `page-NNNN.html` files it writes `crawl.warc.gz` (further pages as WARC request/response records,
one non-HTML response among them) and `planted.json`, which says what each file or record is (the curate
tests read it). The output depends only on the seed and on the docstrings of the running Python's standard
library (a fixed module list, sorted names), not on the machine or the time.
"""

from __future__ import annotations

import argparse
import html
import importlib
import inspect
import io
import json
import random
import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from factory.data.foreign_text import LANGUAGES

SEED = 20240611

# Modules whose docstrings give the prose. A fixed list (not sys.stdlib_module_names) so the corpus does not
# change with the Python version's module set; each one exists from 3.11 on and imports without side effects.
MODULES = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bdb", "binascii", "bisect", "builtins", "bz2",
    "calendar", "cmd", "code", "codecs", "codeop", "collections", "colorsys", "concurrent.futures",
    "configparser", "contextlib", "copy", "copyreg", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "dis", "doctest", "email", "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools",
    "gc", "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html",
    "http.client", "http.server", "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "keyword",
    "linecache", "locale", "logging", "lzma", "mailbox", "math", "mimetypes", "modulefinder", "numbers",
    "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pickletools", "pkgutil", "platform",
    "plistlib", "poplib", "pprint", "profile", "pstats", "py_compile", "pydoc", "queue", "quopri", "random",
    "re", "reprlib", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "site",
    "smtplib", "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "struct",
    "subprocess", "symtable", "sys", "sysconfig", "tabnanny", "tarfile", "tempfile", "textwrap", "threading",
    "time", "timeit", "token", "tokenize", "trace", "traceback", "tracemalloc", "types", "typing",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "zipapp",
    "zipfile", "zlib", "zoneinfo", "asyncio.events", "asyncio.streams", "collections.abc", "email.message",
    "email.utils", "http.cookiejar", "importlib", "importlib.abc", "logging.handlers", "multiprocessing.pool",
    "netrc", "unittest.mock", "urllib.robotparser", "xml.dom.minidom", "xml.etree.ElementTree", "xmlrpc.client",
)


@dataclass(frozen=True)
class Site:
    """One fictional web site: the boilerplate around every article it hosts."""

    name: str
    domain: str
    nav: tuple[str, ...]
    cookie: str
    sidebar_title: str
    newsletter: str
    footer: str


SITES = (
    Site("Pyramid Notes", "pyramid-notes.example", ("Home", "Articles", "Tutorials", "About us", "Contact"),
         "This website stores cookies on your device to personalise content. Manage your cookie preferences.",
         "Trending on Pyramid Notes", "Subscribe to the Pyramid Notes weekly digest for free.",
         "Copyright Pyramid Notes Collective. All rights reserved."),
    Site("The Standard Library Gazette", "stdlib-gazette.example", ("Front page", "Modules", "Archive", "Jobs"),
         "We and our partners use tracking technologies. Click Accept to agree to our cookie policy.",
         "Readers also enjoyed", "Join forty thousand developers who read the Gazette every Monday.",
         "Gazette Media Group, registered office in Exampletown. Terms of use and privacy notice."),
    Site("Batteries Included Blog", "batteries-blog.example", ("Blog", "Podcast", "Newsletter", "Sponsors"),
         "Our site uses essential and analytics cookies. You can change your settings at any time.",
         "More from the blog", "Get every new post by email: enter your address below and press Go.",
         "Batteries Included Blog is hosted by Example Hosting. Advertise with us."),
    Site("Module Garden", "module-garden.example", ("Start", "Browse the garden", "Search", "Log in"),
         "Module Garden needs cookies for login and statistics. Read the consent details here.",
         "Popular in the garden", "Become a Module Garden member and unlock printable cheat sheets.",
         "Module Garden is a community project. Imprint, accessibility statement and sitemap."),
)

# Boilerplate phrases that must never survive extraction (the curate tests look for them in its output).
BOILERPLATE_MARKERS = tuple(
    phrase for site in SITES for phrase in (site.cookie, site.sidebar_title, site.newsletter, site.footer)
) + ("Accept all cookies and continue", "Skip to main content", "Back to top of page")


def _prose_paragraphs(doc: str) -> list[str]:
    """The prose paragraphs of one docstring: no code, no lists, no markup; whitespace collapsed."""
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.splitlines()
        if any(line.startswith((" ", "\t", ">>>", "-", "*", "+", "|", ".")) for line in lines):
            continue  # code samples, option tables, bullet lists
        text = " ".join(line.strip() for line in lines)
        # read like prose rather than code: "call get() on 'name'" -> "call get on name"
        text = re.sub(r"(?<=\w)\(\)", "", text)
        text = re.sub(r"(?<!\w)'|'(?!\w)|\"", "", text)
        words = text.split()
        if len(words) < 6 or not text.endswith(".") or not text[0].isupper():
            continue
        if any(mark in text for mark in ("::", "`", "http", "{", "}", "=", "__", "[", "<", ">", "...", "%")):
            continue
        # share of word tokens among word and punctuation tokens, as Gopher's alphabetic-word rule counts it
        tokens = re.findall(r"\w+|[^\w\s]", text)
        if sum(any(c.isalpha() for c in t) for t in tokens) >= 0.82 * len(tokens):
            out.append(text)
    return out


def _module_docstrings(name: str) -> list[str]:
    """Docstrings of a module, its public functions and classes and their public methods, in name order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = importlib.import_module(name)
        except Exception:  # a module missing from this build (no _ssl, no _sqlite3): its prose is left out
            return []
    docs = [inspect.getdoc(module) or ""]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            docs.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            docs += [inspect.getdoc(m) or "" for a, m in sorted(vars(obj).items())
                     if not a.startswith("_") and inspect.isfunction(m)]
    return docs


def _five_grams(text: str) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def stdlib_blocks(min_words: int = 40) -> dict[str, list[str]]:
    """Per module, prose blocks of at least `min_words` words (short paragraphs of one module joined)."""
    seen: set[tuple[str, ...]] = set()
    blocks: dict[str, list[str]] = {}
    for name in MODULES:
        current: list[str] = []
        for doc in _module_docstrings(name):
            for para in _prose_paragraphs(doc):
                grams = _five_grams(para)
                # sibling functions often share whole sentences (urlunparse / urlunsplit); keep one copy, so
                # only the planted pages trip the repetition and dedup filters
                if len(grams & seen) > 0.2 * len(grams):
                    continue
                seen |= grams
                current.append(para)
                if sum(len(p.split()) for p in current) >= min_words:
                    blocks.setdefault(name, []).append(" ".join(current))
                    current = []
    return blocks


def _pages_from_blocks(blocks: dict[str, list[str]], rng: random.Random) -> list[tuple[str, list[str]]]:
    """Group each module's blocks into articles of about 70-160 words: [(module, paragraphs)]."""
    pages: list[tuple[str, list[str]]] = []
    for module, paras in blocks.items():
        page: list[str] = []
        target = rng.randint(70, 160)
        for para in paras:
            page.append(para)
            if sum(len(p.split()) for p in page) >= target:
                pages.append((module, page))
                page, target = [], rng.randint(70, 160)
        if page and sum(len(p.split()) for p in page) < 60:
            if pages and pages[-1][0] == module:
                pages[-1][1].extend(page)  # a short tail joins the module's previous article
            # else: a module with under 60 words of prose makes no article
        elif page:
            pages.append((module, page))
    return pages


def render_page(site: Site, title: str, paragraphs: list[str], url: str, lang: str = "en") -> str:
    """An HTML page: the article's paragraphs inside the site's header, cookie banner, sidebar and footer."""
    e = html.escape
    nav = "".join(f'<li><a href="/{e(item.lower().replace(" ", "-"))}/">{e(item)}</a></li>' for item in site.nav)
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    related = "".join(f'<li><a href="/post/{i}/">{e(site.name)} post number {i}</a></li>' for i in range(1, 6))
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>{e(title)} | {e(site.name)}</title>
<link rel="canonical" href="{e(url)}">
<style>body {{ font-family: sans-serif; }} .cookie-banner {{ position: fixed; bottom: 0; }}</style>
<script>window.dataLayer = window.dataLayer || []; function gtag() {{ dataLayer.push(arguments); }}</script>
</head>
<body>
<a class="skip-link" href="#content">Skip to main content</a>
<div class="cookie-banner" id="cookie-consent"><p>{e(site.cookie)}</p><button>Accept all cookies and continue</button></div>
<header class="site-header"><div class="logo"><a href="/">{e(site.name)}</a></div>
<nav class="main-menu"><ul>{nav}</ul></nav></header>
<div class="container">
<main id="content"><article>
<h1>{e(title)}</h1>
{body}
</article></main>
<aside class="sidebar"><h3>{e(site.sidebar_title)}</h3><ul>{related}</ul>
<div class="newsletter"><p>{e(site.newsletter)}</p><form><input type="email"><button>Go</button></form></div></aside>
</div>
<footer class="site-footer"><p>{e(site.footer)}</p>
<ul><li><a href="/privacy/">Privacy</a></li><li><a href="/terms/">Terms</a></li></ul>
<a href="#top">Back to top of page</a></footer>
</body>
</html>
"""


def _near_duplicate(paragraphs: list[str], rng: random.Random) -> list[str]:
    """The same article with small edits: one sentence dropped, a few words swapped, a line added."""
    paras = list(paragraphs)
    i = rng.randrange(len(paras))
    sentences = re.split(r"(?<=\.) ", paras[i])
    if len(sentences) > 1:
        del sentences[rng.randrange(len(sentences))]
        paras[i] = " ".join(sentences)
    swaps = {" the ": " this ", " a ": " one ", " is ": " remains ", " and ": " as well as "}
    for old, new in rng.sample(sorted(swaps.items()), 2):
        j = rng.randrange(len(paras))
        paras[j] = paras[j].replace(old, new, 1)
    paras.append("This article was revised for the second edition of these notes.")
    return paras


APP_SHELL = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>App</title><script src="/static/app-{k}.js"></script></head>
<body><div id="root"></div><noscript><img src="/pixel-{k}.gif" alt=""></noscript>
<script>window.__APP__ = {{"route": "/home/{k}"}}; boot();</script></body></html>
"""


def _junk_pages(rng: random.Random) -> list[tuple[str, str, list[str] | str]]:
    """Pages no filter should keep: [(kind, title, paragraphs, or raw HTML for links and no_content)]."""
    junk: list[tuple[str, str, list[str] | str]] = []
    for k in range(3):  # a script-rendered app shell: the extractor finds no text at all
        junk.append(("no_content", "", APP_SHELL.format(k=k)))
    for text in ("Page not found.", "Loading, please wait.", "Coming soon!", "Session expired. Log in again.",
                 "Nothing here yet."):
        junk.append(("short", "Oops", [text]))
    symbols = "# $ % & * + = ~ ^ | @ ★ ✓ → ← § ¶ © ®".split()
    for k in range(4):
        lines = [" ".join(rng.choice(symbols) * rng.randint(1, 4) for _ in range(12)) + " ok" for _ in range(10)]
        junk.append(("symbols", f"Symbols {k}", lines))
    for k in range(4):
        links = "".join(f'<li><a href="/tag/{k}-{i}/">Tag {k}-{i}</a></li>' for i in range(40))
        junk.append(("links", f"All tags {k}", f"<ul>{links}</ul>"))
    for k, line in enumerate(("Click here to claim your free prize now.", "Best deals online, buy now and save.",
                              "Call us today for a free quote.", "Limited offer, only a few items left.")):
        junk.append(("repeated", f"Offer {k}", [line] * 30))
    for k in range(3):
        words = ["cheap", "flights", "hotels", "cars", "deals", "best", "price", "online", "buy"]
        lines = [" ".join(rng.choice(words) for _ in range(14)) + "." for _ in range(12)]
        junk.append(("keyword_stuffing", f"Cheap deals {k}", lines))
    return junk


def _page_url(site: Site, slug: str) -> str:
    return f"https://{site.domain}/{slug}/"


def build(out_dir: Path, seed: int = SEED) -> dict:
    """Write the corpus into `out_dir` (created if missing); return the `planted.json` description."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    articles = _pages_from_blocks(stdlib_blocks(), rng)
    rng.shuffle(articles)
    n_warc = 30
    warc_articles, html_articles = articles[:n_warc], articles[n_warc:]

    # Every HTML page as (kind, info, html) before names are given; names are assigned after a shuffle.
    pages: list[tuple[str, dict, str]] = []
    originals: list[tuple[str, dict, str, list[str]]] = []
    for k, (module, paras) in enumerate(html_articles):
        site = SITES[k % len(SITES)]
        title = f"Notes on the {module} module, part {k}"
        url = _page_url(site, f"{module.replace('.', '-')}-{k}")
        page = render_page(site, title, paras, url)
        pages.append(("prose", {"module": module, "url": url}, page))
        originals.append((title, {"module": module, "url": url, "site": site.name}, page, paras))

    for title, info, page, paras in rng.sample(originals, 12):
        pages.append(("exact_duplicate", {"of_url": info["url"]}, page))
    for title, info, page, paras in rng.sample(originals, 4):
        other = next(s for s in SITES[::-1] if s.name != info["site"])
        url = _page_url(other, "mirror-" + info["url"].rstrip("/").rsplit("/", 1)[-1])
        pages.append(("same_body_other_site", {"of_url": info["url"], "url": url},
                      render_page(other, title, paras, url)))
    for title, info, page, paras in rng.sample(originals, 12):
        site = next(s for s in SITES if s.name == info["site"])
        url = info["url"].rstrip("/") + "-revised/"
        pages.append(("near_duplicate", {"of_url": info["url"], "url": url},
                      render_page(site, title + " (revised)", _near_duplicate(paras, rng), url)))
    for lang, paragraphs in sorted(LANGUAGES.items()):
        for k in range(5):
            site = SITES[k % len(SITES)]
            url = _page_url(site, f"{lang}/artikel-{k}")
            chosen = rng.sample(paragraphs, rng.randint(3, 5))
            pages.append(("non_english", {"language": lang, "url": url},
                          render_page(site, f"{lang} {k}", chosen, url, lang=lang)))
    for k, (kind, title, content) in enumerate(_junk_pages(rng)):
        site = SITES[k % len(SITES)]
        url = _page_url(site, f"junk-{k}")
        if kind == "no_content":
            page = content
        else:
            page = render_page(site, title, content if isinstance(content, list) else [], url)
        if kind == "links":  # raw HTML (a list of links) in place of paragraphs
            page = page.replace(f"<h1>{html.escape(title)}</h1>\n", f"<h1>{html.escape(title)}</h1>\n{content}")
        pages.append(("junk", {"junk": kind, "url": url}, page))

    rng.shuffle(pages)
    files: dict[str, dict] = {}
    for i, (kind, info, page) in enumerate(pages):
        name = f"page-{i:04d}." + ("htm" if i % 23 == 7 else "html")  # a few .htm files, as on real sites
        (out_dir / name).write_text(page, encoding="utf-8")
        files[name] = {"kind": kind, **info}

    records = _write_warc(out_dir / "crawl.warc.gz", warc_articles, originals, rng)
    planted = {"seed": seed, "files": files, "warc": {"crawl.warc.gz": records},
               "boilerplate_markers": list(BOILERPLATE_MARKERS)}
    (out_dir / "planted.json").write_text(json.dumps(planted, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return planted


def _write_warc(path: Path, articles: list[tuple[str, list[str]]], originals: list, rng: random.Random) -> list[dict]:
    """Write a gzipped WARC of request/response pairs; return what each response record is, in order."""
    def record_id() -> str:
        return f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>"

    # (kind, url, html or other payload, content type)
    entries: list[tuple[str, str, str, str]] = []
    for k, (module, paras) in enumerate(articles):
        site = SITES[(k + 1) % len(SITES)]
        url = _page_url(site, f"crawl/{module.replace('.', '-')}-{k}")
        entries.append(("prose", url, render_page(site, f"From the crawl: {module} {k}", paras, url), "text/html"))
    for title, info, page, paras in rng.sample(originals, 2):
        entries.append(("exact_duplicate", info["url"], page, "text/html"))
    url = _page_url(SITES[0], "de/crawl")
    entries.append(("non_english", url, render_page(SITES[0], "Aus dem Netz", LANGUAGES["de"][:3], url, "de"),
                    "text/html"))
    url = _page_url(SITES[1], "crawl/oops")
    entries.append(("junk", url, render_page(SITES[1], "Oops", ["Page not found."], url), "text/html"))
    entries.append(("not_html", _page_url(SITES[2], "api/status.json"), '{"status": "ok"}', "application/json"))
    rng.shuffle(entries)

    records = []
    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=True)
        date = "2024-06-11T12:00:00Z"
        info = writer.create_warcinfo_record("crawl.warc.gz", {"software": "factory.data.smoke_corpus"})
        info.rec_headers.replace_header("WARC-Record-ID", record_id())
        info.rec_headers.replace_header("WARC-Date", date)
        writer.write_record(info)
        for kind, url, payload, content_type in entries:
            request = writer.create_warc_record(
                url, "request", payload=io.BytesIO(b""),
                http_headers=StatusAndHeaders(f"GET {url} HTTP/1.1", [("Host", url.split("/")[2])], is_http_request=True),
                warc_headers_dict={"WARC-Record-ID": record_id(), "WARC-Date": date})
            body = payload.encode("utf-8")
            http_headers = StatusAndHeaders("200 OK", [("Content-Type", f"{content_type}; charset=utf-8"),
                                                       ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            response = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=http_headers,
                warc_headers_dict={"WARC-Record-ID": record_id(), "WARC-Date": date})
            writer.write_record(request)
            writer.write_record(response)
            records.append({"kind": kind, "url": url})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the pages into")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (layout, duplicates, order)")
    args = parser.parse_args(argv)
    planted = build(args.out_dir, args.seed)
    print(f"wrote {len(planted['files'])} HTML pages and {len(planted['warc']['crawl.warc.gz'])} WARC responses "
          f"to {args.out_dir}")


if __name__ == "__main__":
    main()
