"""A small multi-domain corpus of real text with quality tiers, for the mix stage's tests and bench.

Four domains, each document about `chars` characters, in the corpus layout (`{"id", "text", "metadata"}`
with `metadata.domain` and `metadata.quality_tier`, as curate's quality ensemble would set it):

- `docs` (tier 4): docstrings of Python's standard library (English prose about programs);
- `code` (tier 2): source code of Python's standard library;
- `foreign` (tier 1): the German, French and Spanish paragraphs of `factory.data.foreign_text`;
- `tables` (tier 0): rows of numbers, a stand-in for the boilerplate a quality classifier scores lowest.

The text depends only on the running Python's standard library and the seed.

    records = domain_corpus(per_domain=40, chars=400, seed=0)
"""

from __future__ import annotations

import ast
import importlib
import inspect
import random

from factory.data.foreign_text import LANGUAGES

__all__ = ["DOMAIN_TIERS", "domain_corpus", "domain_texts"]

DOMAIN_TIERS = {"docs": 4, "code": 2, "foreign": 1, "tables": 0}
MODULES = ("argparse", "calendar", "collections", "configparser", "contextlib", "csv", "dataclasses", "datetime",
           "decimal", "difflib", "email.message", "enum", "fractions", "functools", "heapq", "inspect", "json",
           "logging", "pathlib", "pickle", "random", "shlex", "shutil", "statistics", "string", "tarfile",
           "textwrap", "threading", "typing", "zipfile")


def _chunks(text: str, chars: int) -> list[str]:
    """`text` cut at line ends into pieces of about `chars` characters."""
    out, piece = [], ""
    for line in text.splitlines(keepends=True):
        piece += line
        if len(piece) >= chars:
            out.append(piece.strip())
            piece = ""
    if len(piece.strip()) >= chars // 2:
        out.append(piece.strip())
    return [p for p in out if p]


def _docstrings(name: str) -> list[str]:
    """The docstrings of module `name`'s source: the module's, then its top-level classes' and functions' by name.

    Read from the source, not the live module, whose attributes depend on what else the process imported (other
    libraries patch and extend stdlib modules), so the corpus is the same in every process."""
    tree = ast.parse(inspect.getsource(importlib.import_module(name)))
    nodes = sorted((n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and not n.name.startswith("_")), key=lambda n: n.name)
    docs = [ast.get_docstring(tree)] + [ast.get_docstring(n) for n in nodes]
    return [d for d in docs if d]


def domain_texts(domain: str, n: int, chars: int, seed: int) -> list[str]:
    """`n` documents of `domain`, distinct while the domain has that many (then cycled)."""
    rng = random.Random(f"{seed}-{domain}")
    if domain == "docs":
        pool = [c for name in MODULES for c in _chunks("\n".join(_docstrings(name)), chars)]
    elif domain == "code":
        pool = [c for name in MODULES for c in _chunks(inspect.getsource(importlib.import_module(name)), chars)]
    elif domain == "foreign":
        paragraphs = [p for texts in LANGUAGES.values() for p in texts]
        pool = []
        for _ in range(n):
            text = ""
            while len(text) < chars:
                text += rng.choice(paragraphs) + "\n"
            pool.append(text.strip())
    elif domain == "tables":
        pool = ["\n".join(",".join(str(rng.randint(0, 99999)) for _ in range(6)) for _ in range(chars // 36))
                for _ in range(n)]
    else:
        raise ValueError(f"unknown domain {domain!r}; domains are {sorted(DOMAIN_TIERS)}")
    pool = list(dict.fromkeys(pool))  # a repeated docstring or source block is one document
    rng.shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)]


def domain_corpus(per_domain: int | dict[str, int], chars: int = 400, seed: int = 0) -> list[dict]:
    """Records of every domain (or the domains `per_domain` names, with their counts), domains interleaved."""
    counts = per_domain if isinstance(per_domain, dict) else {d: per_domain for d in DOMAIN_TIERS}
    columns = {d: domain_texts(d, n, chars, seed) for d, n in counts.items()}
    records = []
    for i in range(max(counts.values())):
        for d, texts in columns.items():
            if i < len(texts):
                records.append({"id": f"{d}-{i:05d}", "text": texts[i],
                                "metadata": {"domain": d, "quality_tier": DOMAIN_TIERS[d]}})
    return records
