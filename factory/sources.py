"""The identity of raw inputs (the files a spec names: curate's sources, evaluation sets, ...).

A raw input's identity is its *listing* by default: every file's path relative to the input, its size, and
its ETag (object storage) or modification time (local disk), hashed in path order. Listing 100k files takes
seconds and reads no content, so a Common Crawl snapshot can be planned without reading it. Full content
hashing (every byte through sha256) is opt-in per input, for inputs whose files may be rewritten in place
with the same size and time.

    identity = input_identity("s3://bucket/crawl/", endpoint_url="http://127.0.0.1:9000")
    identity = input_identity("examples/data/smoke-html", content=True)

Inputs are local paths, `s3://bucket/prefix` (boto3, with the spec's storage endpoint and region), or any
URL fsspec reads (`gs://`, `hf://`, `https://`, ... when the matching fsspec package is installed). File
names that are not valid UTF-8 are listed, hashed and reported by their bytes, escaped with backslashes
(`b\\xe9.html`), never skipped and never a crash.

`fetch_input` copies a remote input into a local folder (the same relative layout) for stages that read
local files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from factory.checkpoint_files import safetensors_header
from factory.errors import InputError
from factory.hub_cache import hub_snapshot, is_hub_ref

CHUNK = 1 << 20
# Every S3 call is bounded: a connect and a read timeout per attempt and three attempts in all (the standard retry
# mode backs off between them), so an endpoint that accepts connections and never answers fails in about a minute,
# naming itself, instead of after 8 attempts of 60 s.
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 20
S3_ATTEMPTS = 3


@dataclass(frozen=True)
class ListedFile:
    """One file of an input: path relative to the input (escaped if not UTF-8), size, version (ETag or mtime)."""

    rel: str
    size: int
    version: str
    location: str | bytes = field(default="", compare=False)  # what opens it: a local path (bytes), S3 key, fsspec path


def display_name(name: str | bytes) -> str:
    """A file name as printable text: its bytes decoded as UTF-8, undecodable bytes as `\\xNN`."""
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    return raw.decode("utf-8", errors="backslashreplace")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://") and not is_hub_ref(uri)


def _local_path(uri: str) -> Path:
    if is_hub_ref(uri):  # read from its snapshot in the local cache
        return hub_snapshot(uri)
    return Path(uri.removeprefix("file://")).expanduser()


def _list_local(root: Path) -> Iterator[ListedFile]:
    try:
        st = root.stat()
    except FileNotFoundError:
        raise InputError(f"{display_name(str(root))}: input not found (check the path in the spec)") from None
    if stat.S_ISREG(st.st_mode):
        yield ListedFile(display_name(root.name), st.st_size, str(st.st_mtime_ns), os.fsencode(root))
        return
    if not stat.S_ISDIR(st.st_mode):  # a device (/dev/zero) or a pipe would be read forever
        raise InputError(f"{display_name(str(root))}: not a regular file or a folder (a device, pipe or socket cannot be an input)")
    # os.walk with bytes paths: a name that is not valid UTF-8 stays its own bytes all the way
    base = os.fsencode(root)
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in files:
            full = os.path.join(folder, name)
            try:
                fst = os.stat(full)
            except FileNotFoundError:  # removed while we listed: not part of the input
                continue
            if stat.S_ISREG(fst.st_mode):
                yield ListedFile(display_name(os.path.relpath(full, base)), fst.st_size, str(fst.st_mtime_ns), full)


@cache
def s3_client(endpoint_url: str | None = None, region: str | None = None):
    """A boto3 S3 client, one per endpoint and region (boto3 clients are thread-safe); endpoint and region default to boto3's own configuration (AWS_ENDPOINT_URL, ...)."""
    # loading a spec imports this module (the stage config base); boto3 and fsspec load only for such sources
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                        config=BotoConfig(retries={"total_max_attempts": S3_ATTEMPTS, "mode": "standard"},
                                          connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_READ_TIMEOUT_S))


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise InputError(f"{uri}: not an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def _list_s3(uri: str, endpoint_url: str | None, region: str | None) -> Iterator[ListedFile]:
    from botocore.exceptions import BotoCoreError, ClientError  # see s3_client

    bucket, prefix = _split_s3(uri)
    client = s3_client(endpoint_url, region)
    # a prefix names a folder: "crawl" must not also take "crawl-old/..."
    folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    found = False
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            for obj in page.get("Contents", []):
                found = True
                yield ListedFile(obj["Key"][len(folder):], int(obj["Size"]), obj["ETag"].strip('"'), obj["Key"])
        if not found and prefix and not prefix.endswith("/"):  # a single object
            head = client.head_object(Bucket=bucket, Key=prefix)
            found = True
            yield ListedFile(prefix.rsplit("/", 1)[-1], int(head["ContentLength"]), head["ETag"].strip('"'), prefix)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise InputError(f"{uri}: input not found (check the URI in the spec)") from None
        raise InputError(f"{uri}: cannot list the input ({code or e})") from None
    except BotoCoreError as e:
        raise InputError(f"{uri}: cannot reach the object store at {endpoint_url or 'the default AWS S3 endpoint'} ({e})") from None
    if not found:
        raise InputError(f"{uri}: input not found or empty (check the URI in the spec)")


def _fsspec(uri: str):
    import fsspec  # see s3_client

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:
        raise InputError(f"{uri}: no filesystem for this URL ({e}); install the fsspec package for its scheme") from None
    return fs, path


def _version(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


def _list_fsspec(uri: str) -> Iterator[ListedFile]:
    fs, path = _fsspec(uri)
    try:
        if fs.isdir(path):
            found = fs.find(path, detail=True)
            base = path.rstrip("/") + "/"
            for name in sorted(found):
                info = found[name]
                if info.get("type", "file") == "file":
                    yield ListedFile(name[len(base):] if name.startswith(base) else name, int(info.get("size") or 0), _version(info), name)
        else:
            info = fs.info(path)
            yield ListedFile(path.rsplit("/", 1)[-1], int(info.get("size") or 0), _version(info), path)
    except FileNotFoundError:
        raise InputError(f"{uri}: input not found (check the URL in the spec)") from None


def list_input(uri: str, endpoint_url: str | None = None, region: str | None = None) -> list[ListedFile]:
    """Every file of the input, sorted by relative path. A Hub reference (`hf://ORG/NAME@REV`) lists its snapshot in
    the local Hugging Face cache (`factory.hub_cache`), never the Hub."""
    if is_hub_ref(uri):
        uri = str(hub_snapshot(uri))
    if uri.startswith("s3://"):
        files = list(_list_s3(uri, endpoint_url, region))
    elif is_remote(uri):
        files = list(_list_fsspec(uri))
    else:
        files = list(_list_local(_local_path(uri)))
    return sorted(files, key=lambda f: f.rel)


def open_listed(uri: str, f: ListedFile, endpoint_url: str | None = None, region: str | None = None):
    """A binary stream of file `f` of input `uri` (from `list_input`), read as far as the caller reads it."""
    return _open(uri, f, endpoint_url, region)


def _open(uri: str, f: ListedFile, endpoint_url: str | None, region: str | None):
    """A binary stream of one listed file."""
    if uri.startswith("s3://"):
        bucket, _ = _split_s3(uri)
        return s3_client(endpoint_url, region).get_object(Bucket=bucket, Key=f.location)["Body"]
    if is_remote(uri):
        fs, _ = _fsspec(uri)
        return fs.open(f.location, "rb")
    return open(f.location, "rb")


@cache
def input_identity(uri: str, content: bool = False, endpoint_url: str | None = None, region: str | None = None) -> dict[str, Any]:
    """{"uri", "digest", "identity", "files", "bytes"}: the input's identity from its listing, or its content.

    `digest` is `sha256:<hex>` over (relative path, size, ETag or mtime) of every file, and the header of every
    safetensors file (`identity: listing`: a 100 GB checkpoint is identified by reading a few KB of it), or with
    `content=True`, over every file's relative path and bytes (`identity: content`).
    """
    files = list_input(uri, endpoint_url, region)
    h = hashlib.sha256()
    for f in files:
        h.update(f.rel.encode("utf-8", errors="surrogateescape") + b"\0")
        if content:
            _hash_content(h, uri, f, endpoint_url, region)
        else:
            h.update(f"{f.size}\0{f.version}\n".encode())
            if f.rel.endswith(".safetensors"):  # its tensors' names, dtypes, shapes and offsets: a few KB of the file
                with _open(uri, f, endpoint_url, region) as stream:
                    h.update(json.dumps(safetensors_header(stream, f.rel), sort_keys=True).encode())
    return {"uri": uri, "digest": "sha256:" + h.hexdigest(), "identity": "content" if content else "listing",
            "files": len(files), "bytes": sum(f.size for f in files)}


def _hash_content(h: Any, uri: str, f: ListedFile, endpoint_url: str | None, region: str | None) -> None:
    if not uri.startswith("s3://"):
        with _open(uri, f, endpoint_url, region) as stream:
            while block := stream.read(CHUNK):
                h.update(block)
        return
    from botocore.exceptions import BotoCoreError, ClientError  # see s3_client

    try:
        with _open(uri, f, endpoint_url, region) as stream:
            while block := stream.read(CHUNK):
                h.update(block)
    except (BotoCoreError, ClientError) as e:
        raise InputError(f"{uri}: cannot read {f.rel} from {endpoint_url or 'the default AWS S3 endpoint'} ({e})") from None


def normalised_uri(uri: str) -> str:
    """A raw input as its identity names it: a URL (or Hub reference) without its trailing slash, a local path
    resolved."""
    return uri.rstrip("/") if is_remote(uri) or is_hub_ref(uri) else str(_local_path(uri).resolve())


def source_digests(stage: str, config, storage=None) -> dict[str, list[dict[str, Any]]]:
    """Identities of the raw inputs named by the config's external-input fields, by field.

    An input listed in the config's `content_hash` field (when the config has one) is identified by a full
    content hash; every other input by its listing. `storage` (the spec's `StorageSpec`) gives the S3
    endpoint and region for `s3://` inputs.
    """
    endpoint = getattr(storage, "endpoint_url", None)
    region = getattr(storage, "region", None)
    by_content = {normalised_uri(p) for p in getattr(config, "content_hash", None) or ()}
    out: dict[str, list[dict[str, Any]]] = {}
    for name in type(config).external_fields():
        value = config.field_value(name)
        if value is None:
            continue
        paths = value if isinstance(value, (list, tuple)) else [value]
        entries = []
        for p in paths:
            try:
                entries.append(input_identity(str(p), normalised_uri(str(p)) in by_content, endpoint, region))
            except InputError as e:
                raise InputError(f"stages.{stage}.{name}: {e}") from None
        out[name] = entries
    return out


def fetch_input(uri: str, dest: Path, endpoint_url: str | None = None, region: str | None = None) -> Path:
    """A local copy of a remote input under `dest` (same relative layout; a file already there is kept when
    its size matches). Returns the local folder, named like the input's last path component."""
    name = uri.rstrip("/").rsplit("/", 1)[-1] or "input"
    local = dest / name
    for f in list_input(uri, endpoint_url, region):
        target = local / f.rel
        if target.exists() and target.stat().st_size == f.size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with _open(uri, f, endpoint_url, region) as stream, open(partial, "wb") as out:
            while block := stream.read(CHUNK):
                out.write(block)
        partial.replace(target)
    return local


def local_sources(sources: list[str], scratch: Path | None, endpoint_url: str | None = None,
                  region: str | None = None) -> list[str]:
    """`sources` with every remote input (`s3://`, fsspec URLs) replaced by a local copy under `scratch`.

    `s3://` inputs are read through `endpoint_url` and `region` (the spec's storage settings, as planning listed
    them), or where those are None, boto3's own configuration (`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`).
    """
    if not any(is_remote(s) for s in sources):
        return list(sources)
    base = Path(scratch if scratch is not None else tempfile.mkdtemp(prefix="factory-sources-")) / "sources"
    # one folder per source, so two prefixes ending in the same name do not mix
    return [str(fetch_input(s, base / hashlib.sha256(s.encode()).hexdigest()[:12], endpoint_url, region)) if is_remote(s) else s
            for s in sources]
