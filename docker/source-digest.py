"""The digest of what a Dockerfile copies from its build context: build-local.sh labels each image with it
(`factory.source-digest`), and the tests that run an image skip when it was built from other code than theirs.

    python docker/source-digest.py docker/Dockerfile.cpu .     # prints a sha256 hex digest

Reads the Dockerfile's COPY sources (files or folders, relative to the context) and hashes every file's path and
bytes in path order, leaving out what .dockerignore leaves out of the context here (caches, build metadata).
Standard library only: build-local.sh may run it with a bare python3.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path

IGNORED_PARTS = ("__pycache__", ".pytest_cache")
IGNORED_SUFFIXES = (".pyc", ".egg-info")


def copied(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = shlex.split(line) if line.startswith("COPY ") else []
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def digest(dockerfile: Path, context: Path) -> str:
    files = []
    for source in copied(dockerfile):
        root = context / source
        files += sorted(root.rglob("*")) if root.is_dir() else [root]
    h = hashlib.sha256()
    for path in sorted(set(files)):
        rel = path.relative_to(context)
        if not path.is_file() or any(p in IGNORED_PARTS or p.endswith(IGNORED_SUFFIXES) for p in rel.parts):
            continue
        h.update(f"{rel.as_posix()}\0{path.stat().st_size}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


if __name__ == "__main__":
    print(digest(Path(sys.argv[1]), Path(sys.argv[2])))
