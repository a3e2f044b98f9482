"""Synthetic "random web text": the negatives the quality classifiers learn to tell from reference text.

Nemotron-CC's classifiers were trained on reference-quality text against random Common Crawl; offline, the
low end of the web is synthesised in the kinds it comes in: navigation and footer boilerplate, keyword
spam, word salad (a real text's words shuffled), link lists, and machine-translated-looking fragments.
Word salad and the fragments reuse `source_texts`, so the negatives share the positives' vocabulary and a
classifier cannot separate them on topic alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

KINDS = ("boilerplate", "keyword_spam", "shuffled", "link_list", "machine_translated")

_NAV = ["Home", "About Us", "Contact", "Blog", "Shop", "Login", "Register", "FAQ", "Careers", "Sitemap", "Cart", "Search"]
_FOOTER = [
    "Copyright © {year} {site}. All rights reserved.",
    "This website uses cookies to improve your experience. Accept | Decline",
    "Privacy Policy | Terms of Use | Cookie Settings",
    "Subscribe to our newsletter for the latest deals!",
    "Follow us on Facebook Twitter Instagram YouTube",
    "Posted by admin at {h}:{m:02d} PM | {n} comments",
    "Share this: Facebook Twitter Pinterest Email",
    "Skip to main content",
    "You are here: Home » {word} » {word2}",
    "Powered by WordPress | Theme by {site}",
]
_SPAM = "cheap best buy online free discount sale top deal price review 2024 download now official hot new".split()
_PRODUCTS = "shoes watches loans casino pills flights hotels phones insurance jeans bags vpn crypto essay".split()
_SITES = ["example-shop", "bestdeals24", "freeinfo", "mysite", "topreviews", "news-portal"]
_STOP = set("the a an of to in and or is are was were be been for on at by with that this it as from".split())


def _words(texts: Sequence[str], rng: random.Random) -> list[str]:
    return rng.choice(texts).split() if texts else _SPAM + _PRODUCTS


def _boilerplate(rng: random.Random, src: Sequence[str]) -> str:
    site = rng.choice(_SITES)
    words = _words(src, rng)
    lines = [" | ".join(rng.sample(_NAV, rng.randint(4, 9)))]
    for _ in range(rng.randint(6, 25)):
        line = rng.choice(_FOOTER).format(
            year=rng.randint(2005, 2025), site=site, h=rng.randint(1, 12), m=rng.randint(0, 59),
            n=rng.randint(0, 40), word=rng.choice(words).strip(".,"), word2=rng.choice(words).strip(".,"),
        )
        lines.append(line)
        if rng.random() < 0.3:
            lines.append(line)  # boilerplate repeats
    return "\n".join(lines)


def _keyword_spam(rng: random.Random, src: Sequence[str]) -> str:
    product = rng.choice(_PRODUCTS)
    keys = [f"{rng.choice(_SPAM)} {product}", f"{product} {rng.choice(_SPAM)}", product, f"{rng.choice(_SPAM)} {rng.choice(_SPAM)} {product}"]
    extra = _words(src, rng)
    out = []
    for _ in range(rng.randint(30, 150)):
        out.append(rng.choice(keys) if rng.random() < 0.7 else rng.choice(extra).strip(".,").lower())
    sep = rng.choice([" ", ", ", " | ", "\n"])
    return sep.join(out)


def _shuffled(rng: random.Random, src: Sequence[str]) -> str:
    words = _words(src, rng)
    words = words[: rng.randint(40, max(41, len(words)))]
    rng.shuffle(words)
    return " ".join(words)


def _link_list(rng: random.Random, src: Sequence[str]) -> str:
    words = [w.strip(".,:;()") for w in _words(src, rng) if w.strip(".,:;()")]
    site = rng.choice(_SITES)
    lines = []
    for _ in range(rng.randint(8, 40)):
        title = " ".join(rng.sample(words, min(len(words), rng.randint(2, 6)))).title()
        slug = "-".join(title.lower().split())
        lines.append(rng.choice([
            f"» {title}", f"{title} - http://www.{site}.com/{slug}", f"Read more: {title}",
            f"https://{site}.net/{slug}?id={rng.randint(1, 99999)}", f"Click here for {title}", f"* {title} ({rng.randint(1, 300)})",
        ]))
    return "\n".join(lines)


def _machine_translated(rng: random.Random, src: Sequence[str]) -> str:
    words = _words(src, rng)[: rng.randint(40, 300)]
    out: list[str] = []
    for w in words:
        if w.lower() in _STOP and rng.random() < 0.6:
            continue  # articles and prepositions lost in translation
        out.append(w)
        if rng.random() < 0.05:
            out.append(rng.choice(["of the", "is being", "very much", "the the", "for to"]))
    for i in range(0, len(out) - 1, 3):
        if rng.random() < 0.5:
            out[i], out[i + 1] = out[i + 1], out[i]  # local word order scrambled
    return " ".join(out)


_MAKERS: dict[str, Callable[[random.Random, Sequence[str]], str]] = {
    "boilerplate": _boilerplate,
    "keyword_spam": _keyword_spam,
    "shuffled": _shuffled,
    "link_list": _link_list,
    "machine_translated": _machine_translated,
}


def synthesize_junk(n: int, source_texts: Sequence[str] = (), seed: int = 0, kinds: Sequence[str] = KINDS) -> list[str]:
    """`n` junk documents, cycling through `kinds`; word salad and fragments are cut from `source_texts`."""
    unknown = set(kinds) - set(_MAKERS)
    if unknown:
        raise ValueError(f"unknown junk kinds {sorted(unknown)}; known: {list(KINDS)}")
    rng = random.Random(seed)
    return [_MAKERS[kinds[i % len(kinds)]](rng, source_texts) for i in range(n)]
