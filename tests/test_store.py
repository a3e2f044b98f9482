"""The artifact stores: the same contract on a local folder and on a real S3 endpoint (moto server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.errors import InputError
from factory.store import MANIFEST, LocalStore, S3Store, open_store, sha256_file


def _stage_files(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("alpha\n")
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(f"s3://{bucket}/prefix", endpoint_url=endpoint, region="us-east-1", cache_dir=tmp_path / "cache")


def test_publish_then_complete_and_materialize(store, tmp_path):
    staging = store.staging_dir("curate/abc", tmp_path / "work")
    _stage_files(staging)
    manifest = store.publish(staging, "curate/abc", {"kind": "corpus", "stage": "curate", "fingerprint": "f" * 64})

    assert manifest["uri"] == store.uri("curate/abc")
    assert [f["path"] for f in manifest["files"]] == ["a.txt", "sub/b.bin"]
    assert manifest["files"][1]["size"] == 2560
    got = store.complete("curate/abc")
    assert got is not None and got["fingerprint"] == "f" * 64
    local = store.materialize("curate/abc")
    assert (local / "a.txt").read_text() == "alpha\n"
    assert sha256_file(local / "sub" / "b.bin") == manifest["files"][1]["sha256"]
    assert store.keys("curate") == ["curate/abc"]


def test_absent_and_incomplete_artifacts_are_not_complete(store, tmp_path):
    assert store.complete("curate/none") is None
    staging = store.staging_dir("curate/x", tmp_path / "work")
    _stage_files(staging)
    store.publish(staging, "curate/x", {"kind": "corpus", "fingerprint": "1" * 64})
    # Delete one listed file behind the store's back: the artifact no longer counts as published.
    if isinstance(store, LocalStore):
        (store.folder("curate/x") / "sub" / "b.bin").unlink()
    else:
        store.client.delete_object(Bucket=store.bucket, Key=store._key("curate/x", "sub/b.bin"))
    assert store.complete("curate/x") is None


def test_upload_killed_before_manifest_leaves_nothing_visible(store, tmp_path):
    """Files without a manifest (a publish killed half-way) are invisible to readers."""
    if isinstance(store, LocalStore):
        partial = store.staging_dir("tokenize/k", tmp_path / "work")
        _stage_files(partial)  # staged but never renamed into place
    else:
        store.client.put_object(Bucket=store.bucket, Key=store._key("tokenize/k", "a.txt"), Body=b"alpha\n")
    assert store.complete("tokenize/k") is None
    assert store.keys("tokenize") == []


def test_s3_materialize_rejects_corrupted_object(s3_endpoint, s3_bucket, tmp_path):
    store = S3Store(f"s3://{s3_bucket}", endpoint_url=s3_endpoint, cache_dir=tmp_path / "cache")
    staging = tmp_path / "stage"
    _stage_files(staging)
    store.publish(staging, "pretrain/c", {"kind": "checkpoint", "fingerprint": "2" * 64})
    # Same size, different bytes: only the digest check can catch it.
    store.client.put_object(Bucket=s3_bucket, Key="pretrain/c/a.txt", Body=b"ALPHA\n")
    import shutil

    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(InputError, match="sha256 does not match"):
        store.materialize("pretrain/c")
    assert not (tmp_path / "cache" / "pretrain" / "c").exists()


def test_s3_unreachable_endpoint_is_one_clear_error(tmp_path):
    from factory.errors import ServiceError

    store = S3Store("s3://nobucket", endpoint_url="http://127.0.0.1:9", cache_dir=tmp_path)
    with pytest.raises(ServiceError, match="cannot reach bucket 'nobucket' at http://127.0.0.1:9"):
        store.check()


def test_open_store_schemes(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    with pytest.raises(InputError, match="storage.root: unsupported scheme"):
        open_store("gs://bucket/x")


def test_local_manifest_is_written_last(tmp_path):
    store = LocalStore(tmp_path / "s")
    staging = store.staging_dir("a/b", tmp_path)
    _stage_files(staging)
    store.publish(staging, "a/b", {"kind": "k", "fingerprint": "3" * 64})
    folder = store.folder("a/b")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert {f["path"] for f in manifest["files"]} == {"a.txt", "sub/b.bin"}
    assert not staging.exists()


def test_delete_removes_a_key_and_nothing_beside_it(store, tmp_path):
    for key in ("mix/abc.work/prepared", "mix/abc.work/proxy-1-0", "mix/abc"):
        staging = store.staging_dir(key, tmp_path / "work")
        _stage_files(staging)
        store.publish(staging, key, {"kind": "piece", "fingerprint": "2" * 64})
    store.delete("mix/abc.work")
    assert store.complete("mix/abc.work/prepared") is None and store.complete("mix/abc.work/proxy-1-0") is None
    assert store.read_manifest("mix/abc.work/prepared") is None
    assert store.complete("mix/abc") is not None  # a key that only starts with the same letters stays
    if isinstance(store, LocalStore):
        assert not store.folder("mix/abc.work").exists()
    else:
        assert not list(store._objects(store._key("mix/abc.work") + "/"))
    store.delete("mix/never-there")  # nothing to remove is not an error


def test_s3_missing_bucket_is_one_clear_error(s3_endpoint, tmp_path):
    from factory.errors import ServiceError

    store = S3Store("s3://no-such-bucket/prefix", endpoint_url=s3_endpoint, region="us-east-1", cache_dir=tmp_path)
    for call in (lambda: store.read_manifest("curate/0123"), lambda: store.keys("curate"), store.check):
        with pytest.raises(ServiceError, match=rf"^storage\.root: bucket 'no-such-bucket' does not exist at {s3_endpoint}; create it"):
            call()


def test_s3_endpoint_that_never_answers_fails_in_bounded_time_naming_itself(tmp_path, monkeypatch):
    """An endpoint that accepts connections and never answers: 60 s read timeout x 8 attempts (552 s) before; now
    connect and read timeouts and three attempts, each call one ServiceError naming the endpoint."""
    import socket
    import threading
    import time

    from factory import sources
    from factory.errors import ServiceError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(16)], daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setattr(sources, "S3_READ_TIMEOUT_S", 0.5)  # the defaults (5 s, 20 s) take a minute: same bound
    sources.s3_client.cache_clear()
    try:
        store = S3Store("s3://bucket/prefix", endpoint_url=endpoint, region="us-east-1", cache_dir=tmp_path)
        started = time.monotonic()
        with pytest.raises(ServiceError, match=rf"^storage\.root: reading a manifest in bucket 'bucket' at {endpoint} failed: "
                                               rf"Read timeout on endpoint URL"):
            store.read_manifest("curate/0123")
        assert time.monotonic() - started < sources.S3_ATTEMPTS * (0.5 + 1) + 3  # attempts x timeout, with backoff
    finally:
        sources.s3_client.cache_clear()
        server.close()
        for conn, _ in held:
            conn.close()


def test_published_files_are_readable_by_all_whatever_mode_their_writer_gave_them(tmp_path):
    """safetensors' save_file and mkstemp create files 0600; a release is read by engines and people under other
    uids, so publishing makes every file and folder readable by all, the manifest included."""
    import torch
    from safetensors.torch import save_file

    store = LocalStore(tmp_path / "store")
    staging = store.staging_dir("release/abc", tmp_path / "work")
    _stage_files(staging)
    save_file({"w": torch.zeros(2)}, staging / "model.safetensors")
    (staging / "sub").chmod(0o700)
    assert (staging / "model.safetensors").stat().st_mode & 0o777 == 0o600  # what the writer made
    store.publish(staging, "release/abc", {"kind": "release", "stage": "release", "fingerprint": "f" * 64})
    folder = store.folder("release/abc")
    for p in [folder, *folder.rglob("*")]:
        wanted = 0o555 if p.is_dir() else 0o444
        assert p.stat().st_mode & wanted == wanted, f"{p.relative_to(folder)} is {oct(p.stat().st_mode & 0o777)}"
