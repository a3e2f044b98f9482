"""Where artifacts live.

An artifact is a folder of files plus `manifest.json` (kind, fingerprint, inputs, producer, git commit,
and every file with its size and sha256). The manifest is written last and is what makes an artifact
visible: a folder without one, or whose files no longer match it, does not count as published.

- `LocalStore`: a folder. A step runs in `ROOT/.staging/STAGE/FINGERPRINT`, the manifest is written there,
  then the folder is renamed into place, which is atomic on one filesystem.
- `S3Store`: any S3-compatible service (AWS, MinIO, Ceph) through boto3, endpoint URL configurable. Files
  are uploaded first and the manifest last, so a killed upload leaves nothing that looks complete. boto3's
  standard retry mode handles throttling and transient network errors; every call has connect and read timeouts
  and three attempts (`factory.sources.s3_client`), and a failure is one `ServiceError` naming the bucket and
  the endpoint (a bucket that does not exist, an endpoint that never answers).

Keys are `STAGE/FINGERPRINT16`. Stages always work on local folders; `materialize` brings an S3 artifact
into a local cache (checking sizes and digests) and `publish` sends a local folder up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from factory.errors import InputError, ServiceError
from factory.jsonl import write_text_atomic
from factory.sources import s3_client

MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def list_files(folder: Path) -> list[dict[str, Any]]:
    """Every file under `folder` (except the manifest), sorted, with size and sha256."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not (p.name == MANIFEST and p.parent == folder):
            rel = p.relative_to(folder).as_posix()
            out.append({"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)})
    return out


def make_readable(folder: Path) -> None:
    """Every file and folder under `folder` readable by all (as a published folder is shared: a serving engine or a
    colleague under another uid reads it). Writers that create private files (`tempfile.mkstemp`, safetensors'
    `save_file`: mode 0600) would otherwise publish them so."""
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            mode = p.stat().st_mode
            p.chmod(mode | (0o555 if p.is_dir() else 0o444))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync, then rename over it (`factory.jsonl.write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


class Store(ABC):
    """An artifact store. `key` is `STAGE/FINGERPRINT16`."""

    root: str

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def read_manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest at `key`, or None when none is published there."""

    @abstractmethod
    def _file_sizes(self, key: str) -> dict[str, int]:
        """Relative path -> size of every file stored under `key`."""

    @abstractmethod
    def publish(self, staging: Path, key: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Publish the staged folder at `key`; the manifest (with its file list) is written last."""

    @abstractmethod
    def materialize(self, key: str) -> Path:
        """A local folder holding the artifact's files."""

    @abstractmethod
    def keys(self, stage: str) -> list[str]:
        """Keys under `stage/` that hold a manifest."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove everything under `key` (manifests first, so a reader never sees a published artifact lose files)."""

    def staging_dir(self, key: str, work_dir: Path) -> Path:
        """Deterministic local staging folder for `key`, so a resumable stage finds its partial work."""
        return work_dir / ".staging" / key

    def complete(self, key: str) -> dict[str, Any] | None:
        """The manifest if the artifact is published and every file it lists exists with its size."""
        manifest = self.read_manifest(key)
        if manifest is None:
            return None
        sizes = self._file_sizes(key)
        for entry in manifest.get("files", []):
            if sizes.get(entry["path"]) != entry["size"]:
                return None
        return manifest

    def manifests(self, stage: str) -> Iterator[dict[str, Any]]:
        for key in self.keys(stage):
            m = self.read_manifest(key)
            if m is not None:
                yield m

    @staticmethod
    def finalize_manifest(staging: Path, manifest: dict[str, Any], uri: str) -> dict[str, Any]:
        make_readable(staging)
        return {**manifest, "uri": uri, "files": list_files(staging)}


class LocalStore(Store):
    """Artifacts as folders under a local root."""

    def __init__(self, root: str | Path):
        self.path = Path(root).expanduser().resolve()
        self.root = str(self.path)

    def uri(self, key: str) -> str:
        return (self.path / key).as_uri()

    def folder(self, key: str) -> Path:
        return self.path / key

    def read_manifest(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / key / MANIFEST).read_text())
        except FileNotFoundError:
            return None

    def _file_sizes(self, key: str) -> dict[str, int]:
        folder = self.path / key
        return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}

    def staging_dir(self, key: str, work_dir: Path) -> Path:
        # Stage on the same filesystem as the destination so the final rename is atomic.
        return self.path / ".staging" / key

    def publish(self, staging: Path, key: str, manifest: dict[str, Any]) -> dict[str, Any]:
        dest = self.path / key
        manifest = self.finalize_manifest(staging, manifest, self.uri(key))
        write_json_atomic(staging / MANIFEST, manifest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            # A stale, incomplete folder (files deleted by hand, say): move it aside, then replace it.
            trash = dest.parent / f".trash-{dest.name}-{uuid.uuid4().hex[:8]}"
            os.replace(dest, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, dest)
        return manifest

    def materialize(self, key: str) -> Path:
        return self.path / key

    def keys(self, stage: str) -> list[str]:
        folder = self.path / stage
        if not folder.is_dir():
            return []
        return sorted(f"{stage}/{p.name}" for p in folder.iterdir() if (p / MANIFEST).is_file())


    def delete(self, key: str) -> None:
        folder = self.folder(key)
        for manifest in folder.rglob(MANIFEST):
            manifest.unlink()
        shutil.rmtree(folder, ignore_errors=True)


class S3Store(Store):
    """Artifacts under `s3://bucket/prefix`, on any S3-compatible endpoint."""

    def __init__(self, root: str, endpoint_url: str | None = None, region: str | None = None, cache_dir: Path | None = None):
        parsed = urlparse(root)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InputError(f"storage.root: {root!r} is not an s3://bucket/prefix URI")
        self.root = root.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url
        self.cache_dir = (cache_dir or Path(tempfile.gettempdir()) / "factory-s3-cache").resolve()
        self.client = s3_client(endpoint_url, region)

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Turn botocore's errors inside into one `ServiceError` that names the bucket and the endpoint."""
        from botocore.exceptions import BotoCoreError, ClientError  # boto3 loads with the client: see s3_client

        try:
            yield
        except (BotoCoreError, ClientError) as e:
            where = self.endpoint_url or "the default AWS S3 endpoint"
            code = e.response.get("Error", {}).get("Code", "") if isinstance(e, ClientError) else ""
            if code == "NoSuchBucket":
                raise ServiceError(f"storage.root: bucket {self.bucket!r} does not exist at {where}; create it, "
                                   "or fix storage.root", cause=e) from None
            detail = " ".join(str(e).split())  # botocore messages may span lines
            raise ServiceError(f"storage.root: {what} in bucket {self.bucket!r} at {where} failed: {detail}",
                               cause=e) from None

    def _key(self, key: str, rel: str = "") -> str:
        parts = [p for p in (self.prefix, key, rel) if p]
        return "/".join(parts)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check(self) -> None:
        """Fail with one clear message if the bucket cannot be reached."""
        from botocore.exceptions import BotoCoreError, ClientError  # see s3_client

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as e:
            where = self.endpoint_url or "the default AWS endpoint"
            if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise ServiceError(f"storage.root: bucket {self.bucket!r} does not exist at {where}; create it, "
                                   "or fix storage.root") from None
            raise ServiceError(f"storage.root: cannot reach bucket {self.bucket!r} at {where}: {' '.join(str(e).split())}") from None

    def read_manifest(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError  # see s3_client

        with self._calls("reading a manifest"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._key(key, MANIFEST))["Body"].read()
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
        return json.loads(body)

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        with self._calls("listing"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    def _file_sizes(self, key: str) -> dict[str, int]:
        base = self._key(key) + "/"
        return {o["Key"][len(base):]: o["Size"] for o in self._objects(base)}

    def publish(self, staging: Path, key: str, manifest: dict[str, Any]) -> dict[str, Any]:
        manifest = self.finalize_manifest(staging, manifest, self.uri(key))
        with self._calls("publishing"):
            for entry in manifest["files"]:
                self.client.upload_file(str(staging / entry["path"]), self.bucket, self._key(key, entry["path"]))
            # The manifest goes last: until it exists, readers treat the key as absent.
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key, MANIFEST),
                Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
                ContentType="application/json",
            )
        write_json_atomic(staging / MANIFEST, manifest)
        cached = self.cache_dir / key
        if not cached.exists():
            # The staged files are exactly what was published: keep them as the local cache copy.
            cached.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, cached)
        return manifest

    def materialize(self, key: str) -> Path:
        manifest = self.complete(key)
        if manifest is None:
            raise InputError(f"{self.uri(key)}: no complete artifact there (manifest missing or files incomplete)")
        dest = self.cache_dir / key
        cached = dest / MANIFEST
        if cached.is_file() and json.loads(cached.read_text()).get("fingerprint") == manifest.get("fingerprint"):
            return dest
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            for entry in manifest["files"]:
                target = tmp / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                with self._calls("downloading"):
                    self.client.download_file(self.bucket, self._key(key, entry["path"]), str(target))
                if sha256_file(target) != entry["sha256"]:
                    raise InputError(f"{self.uri(key)}/{entry['path']}: sha256 does not match the manifest")
            write_json_atomic(tmp / MANIFEST, manifest)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def keys(self, stage: str) -> list[str]:
        base = self._key(stage) + "/"
        found = set()
        for o in self._objects(base):
            rest = o["Key"][len(base):]
            name, _, file = rest.partition("/")
            if file == MANIFEST:
                found.add(f"{stage}/{name}")
        return sorted(found)


    def delete(self, key: str) -> None:
        objects = [o["Key"] for o in self._objects(self._key(key) + "/")]
        objects.sort(key=lambda k: not k.endswith("/" + MANIFEST))  # the manifests first
        for start in range(0, len(objects), 1000):  # DeleteObjects takes at most 1000 keys per call
            batch = [{"Key": k} for k in objects[start : start + 1000]]
            with self._calls("deleting"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        shutil.rmtree(self.cache_dir / key, ignore_errors=True)


def open_store(root: str, endpoint_url: str | None = None, region: str | None = None, work_dir: Path | None = None) -> Store:
    """A store for `root`: `s3://bucket/prefix` gives an S3Store, anything else a local folder."""
    if root.startswith("s3://"):
        cache = (work_dir / "s3-cache") if work_dir else None
        return S3Store(root, endpoint_url=endpoint_url, region=region, cache_dir=cache)
    if "://" in root and not root.startswith("file://"):
        raise InputError(f"storage.root: unsupported scheme in {root!r} (use a folder path or s3://bucket/prefix)")
    return LocalStore(urlparse(root).path if root.startswith("file://") else root)
