"""Hugging Face Hub references resolved offline, in the Hub cache on this machine: nothing is downloaded at run time.

    hub_snapshot("hf://meta-llama/Llama-3.2-1B@main")    # -> Path(".../models--meta-llama--Llama-3.2-1B/snapshots/<commit>")

A reference is `hf://ORG/NAME` or `hf://ORG/NAME@REVISION` (a branch, a tag or a commit hash; default `main`). The cache
is where `huggingface_hub` keeps it (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), laid out as
`models--ORG--NAME/refs/<branch or tag>` (the commit it points to) and `snapshots/<commit>/` (the files). A reference
missing from the cache, or a revision the cache does not hold, is one `InputError` saying how to get it there.
"""

from __future__ import annotations

import re
from pathlib import Path

from factory.errors import InputError

PREFIX = "hf://"
_REF = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.\-]*/[\w.\-]+)(?:@(?P<revision>[\w.\-/]+))?/?$")


def is_hub_ref(uri: str) -> bool:
    return uri.startswith(PREFIX)


def parse_hub_ref(uri: str) -> tuple[str, str]:
    """(repo id, revision) of `hf://ORG/NAME[@REVISION]`."""
    m = _REF.match(uri)
    if m is None:
        raise InputError(f"{uri}: not a Hub reference; write hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return m["repo"], m["revision"] or "main"


def cache_dir() -> Path:
    from huggingface_hub import constants  # huggingface_hub imports httpx: only a spec naming a Hub model pays for it

    return Path(constants.HF_HUB_CACHE)


def hub_snapshot(uri: str) -> Path:
    """The local snapshot folder of Hub reference `uri`, from the cache only."""
    from huggingface_hub import snapshot_download  # as in cache_dir
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, revision = parse_hub_ref(uri)
    folder = cache_dir() / f"models--{repo.replace('/', '--')}"
    if not folder.is_dir():
        raise InputError(f"{uri}: {repo} is not in the Hugging Face cache on this machine ({cache_dir()}); the factory "
                         f"never downloads at run time: fetch it first (`hf download {repo} --revision {revision}`) "
                         "or set HF_HOME to the cache that holds it")
    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        refs = sorted(p.name for p in (folder / "refs").iterdir()) if (folder / "refs").is_dir() else []
        snapshots = sorted(p.name for p in (folder / "snapshots").iterdir()) if (folder / "snapshots").is_dir() else []
        raise InputError(f"{uri}: revision {revision!r} of {repo} is not in the Hugging Face cache ({folder}; it holds "
                         f"refs {refs or 'none'}, snapshots {snapshots or 'none'}); fetch it first "
                         f"(`hf download {repo} --revision {revision}`)") from None


def snapshot_commit(folder: Path) -> str | None:
    """The commit a snapshot folder is named for (`snapshots/<commit>`), or None for a folder outside the cache."""
    folder = Path(folder)
    return folder.name if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
