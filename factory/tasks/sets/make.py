"""Write the built-in evaluation sets from text that ships with Python: no network, no randomness left.

    python -m factory.tasks.sets.make            # rewrites factory/tasks/sets/stdlib_cloze.jsonl
    python -m factory.tasks.sets.make --check    # exit 1 if the committed file differs

`stdlib_cloze` is a LAMBADA-style last-word cloze (Paperno et al., 2016): a run of whole sentences (21 to 80
words) from the prose of a standard-library docstring, cut before its last word; the model must predict that
word. As in LAMBADA the word has to be guessable from the passage: it must appear earlier in it, so a model
that reads its context can copy it. Docstrings come from a fixed list of module files, parsed with `ast`
(nothing is imported or run), and the set keeps only passages that share no 13-word n-gram with the smoke
corpus's prose (`factory.data.smoke_corpus.stdlib_blocks`) or with each other, so decontaminating the smoke
corpus against the set removes nothing.
The output depends only on the running Python's standard-library sources (made with Python 3.11).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from factory.curate.decontaminate import NgramIndex, words
from factory.data.smoke_corpus import stdlib_blocks

SETS_DIR = Path(__file__).resolve().parent
MIN_WORDS, MAX_WORDS = 21, 80  # whole passage, so the context keeps at least 20 words

# Module files (relative to the stdlib folder) with prose docstrings that the smoke corpus does not use
# (none is in smoke_corpus.MODULES); each exists from Python 3.11 to 3.13.
SOURCES = (
    "asyncio/base_events.py", "asyncio/futures.py", "asyncio/locks.py", "asyncio/protocols.py",
    "asyncio/queues.py", "asyncio/runners.py", "asyncio/selector_events.py", "asyncio/sslproto.py",
    "asyncio/staggered.py", "asyncio/tasks.py", "asyncio/transports.py", "asyncio/unix_events.py",
    "compileall.py", "concurrent/futures/process.py", "curses/__init__.py", "curses/textpad.py",
    "dbm/__init__.py", "dbm/dumb.py", "email/base64mime.py", "email/charset.py", "email/feedparser.py",
    "email/generator.py", "email/header.py", "email/headerregistry.py", "email/mime/base.py",
    "email/parser.py", "email/policy.py", "email/quoprimime.py", "encodings/aliases.py",
    "encodings/punycode.py", "http/cookies.py", "importlib/resources/simple.py", "importlib/util.py",
    "json/decoder.py", "json/encoder.py", "logging/config.py", "multiprocessing/forkserver.py",
    "multiprocessing/shared_memory.py", "ntpath.py", "pyclbr.py", "runpy.py", "sqlite3/dump.py",
    "stringprep.py", "turtle.py", "unittest/case.py", "unittest/loader.py", "unittest/result.py",
    "unittest/runner.py", "unittest/util.py", "webbrowser.py", "wsgiref/headers.py", "wsgiref/util.py",
    "xml/dom/expatbuilder.py", "xml/dom/xmlbuilder.py", "xml/sax/handler.py", "xml/sax/saxutils.py",
    "xml/sax/xmlreader.py", "xmlrpc/server.py", "zipimport.py",
)

# Function words make a cloze that tests grammar rather than reading; LAMBADA's targets are content words.
STOPWORDS = frozenset(
    "the and for are but not you all any can had her was one our out has him his how its may new now see "
    "two who did get let put say she too use that with have this will your from they been were which their "
    "what there when make like than then them these some would other into only also more such used each "
    "given none true false".split()
)


def docstrings(source: str, tree: ast.AST) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of a module and its classes and functions, in source order."""
    module = source.removesuffix(".py").removesuffix("/__init__").replace("/", ".")

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield prefix, doc
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, f"{prefix}.{child.name}")

    yield from visit(tree, module)


def prose_sentences(doc: str) -> list[str]:
    """The sentences of a docstring's prose paragraphs (no code, lists or markup), whitespace collapsed."""
    sentences: list[str] = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.splitlines()
        if any(line.startswith((" ", "\t", ">>>", "-", "*", "+", "|", ".", ":")) for line in lines):
            continue  # code samples, option tables, bullet lists, reST directives
        text = " ".join(line.strip() for line in lines)
        # read like prose rather than code: "call get() on 'name'" -> "call get on name"
        text = re.sub(r"(?<=\w)\(\)", "", text)
        text = re.sub(r"(?<!\w)'|'(?!\w)|\"", "", text)
        if not text[:1].isupper() or not text.endswith("."):
            continue
        if any(mark in text for mark in ("::", "`", "http", "{", "}", "=", "__", "[", "<", ">", "...", "%")):
            continue
        sentences += re.split(r"(?<=\.)\s+(?=[A-Z])", text)
    return sentences


def passages(sentences: list[str]) -> Iterator[tuple[str, str]]:
    """(context, target) pairs from consecutive sentences, none sharing a sentence.

    A passage is the shortest run of whole sentences with MIN_WORDS..MAX_WORDS words whose last word is a
    content word that already appears earlier in the run.
    """
    run: list[str] = []
    for sentence in sentences:
        run += sentence.split()
        if len(run) > MAX_WORDS:
            run = []
            continue
        if len(run) < MIN_WORDS:
            continue
        last = run[-1][:-1]  # without the final "."
        if not (last.isalpha() and last.islower() and len(last) >= 3 and last not in STOPWORDS):
            continue
        context = " ".join(run[:-1])
        if last in re.findall(r"[a-z]+", context.lower()):
            yield context, " " + last
            run = []


def build_stdlib_cloze(stdlib: Path | None = None) -> list[dict[str, str]]:
    """The stdlib_cloze items: {"id", "source", "context", "target"}, in a fixed order."""
    root = stdlib or Path(sysconfig.get_paths()["stdlib"])
    smoke = NgramIndex((("smoke", block) for blocks in stdlib_blocks().values() for block in blocks), 13, 1)
    seen: set[str] = set()  # 13-grams of the passages taken so far
    candidates: list[tuple[str, str, str]] = []  # (source, context, target)
    for source in SOURCES:
        path = root / source
        if not path.is_file():
            continue
        for name, doc in docstrings(source, ast.parse(path.read_text(encoding="utf-8"))):
            for context, target in passages(prose_sentences(doc)):
                w = words(context + target)
                grams = {" ".join(w[i:i + 13]) for i in range(len(w) - 12)}
                # a passage the smoke corpus (or an earlier item: sibling docstrings repeat) already holds
                if smoke.match(context + target) or grams & seen:
                    continue
                seen |= grams
                candidates.append((name, context, target))
    return [
        {"id": f"stdlib_cloze-{i:03d}", "source": source, "context": context, "target": target}
        for i, (source, context, target) in enumerate(candidates)
    ]


def render(items: list[dict[str, str]]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    args = parser.parse_args(argv)
    path = SETS_DIR / "stdlib_cloze.jsonl"
    text = render(build_stdlib_cloze())
    if args.check:
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        print(f"{path.name}: {'up to date' if same else 'differs'}")
        return 0 if same else 1
    path.write_text(text, encoding="utf-8")
    print(f"{path.name}: {text.count(chr(10))} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
