"""Raw-input identity from listings (factory.sources): local disk, S3 (moto server), fsspec; odd file names."""

from __future__ import annotations

import os

import boto3
import pytest
import yaml

from factory.errors import InputError
from factory.sources import display_name, input_identity, list_input, local_sources
from tests.spine import corpus_records, small_corpus, small_spec_data


def _identity(uri: str, **kw) -> dict:
    input_identity.cache_clear()  # a test changes files between calls; the cache is per planning process
    return input_identity(uri, **kw)


def test_local_listing_identity_follows_size_and_mtime_content_hash_follows_bytes(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    a, b = tmp_path / "in" / "a.html", tmp_path / "in" / "sub" / "b.html"
    a.write_text("<p>one</p>")
    b.write_text("<p>two</p>")
    files = list_input(str(tmp_path / "in"))
    assert [(f.rel, f.size) for f in files] == [("a.html", 10), ("sub/b.html", 10)]
    listing, content = _identity(str(tmp_path / "in")), _identity(str(tmp_path / "in"), content=True)
    assert (listing["identity"], content["identity"]) == ("listing", "content")
    assert listing["digest"].startswith("sha256:") and listing["digest"] != content["digest"]
    assert (listing["files"], listing["bytes"]) == (2, 20)

    os.utime(a, ns=(1, 1))  # same bytes, another time: the listing changes, the content hash does not
    assert _identity(str(tmp_path / "in"))["digest"] != listing["digest"]
    assert _identity(str(tmp_path / "in"), content=True)["digest"] == content["digest"]
    stamp = a.stat().st_mtime_ns
    a.write_text("<p>ONE</p>")  # rewritten in place with the same size and time: only content hashing sees it
    os.utime(a, ns=(stamp, stamp))
    assert _identity(str(tmp_path / "in"), content=True)["digest"] != content["digest"]

    with pytest.raises(InputError, match="input not found"):
        _identity(str(tmp_path / "missing"))


def test_file_names_that_are_not_utf8_are_listed_hashed_and_reported(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    raw = os.path.join(os.fsencode(root), b"caf\xe9.html")  # Latin-1 bytes: not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write(b"<p>x</p>")
    (root / "ok.html").write_text("<p>y</p>")
    assert [f.rel for f in list_input(str(root))] == ["caf\\xe9.html", "ok.html"]
    assert display_name(os.fsdecode(raw)).endswith("caf\\xe9.html")
    first = _identity(str(root), content=True)
    assert first["files"] == 2 and first["bytes"] == 16
    with open(raw, "wb") as fh:
        fh.write(b"<p>z</p>")
    assert _identity(str(root), content=True)["digest"] != first["digest"]


def test_fsspec_url_is_listed(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe({"/crawl/a.html": b"<p>a</p>", "/crawl/b/c.html": b"<p>cc</p>"})
    files = list_input("memory://crawl")
    assert [(f.rel, f.size) for f in files] == [("a.html", 8), ("b/c.html", 9)]
    assert _identity("memory://crawl", content=True)["files"] == 2


def test_s3_prefix_is_listed_by_etag_and_a_missing_one_is_one_error(s3_endpoint, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for key, body in {"crawl/a.html": b"<p>a</p>", "crawl/sub/b.html": b"<p>bb</p>", "crawl-old/x.html": b"x"}.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    uri = f"s3://{s3_bucket}/crawl"
    files = list_input(uri, s3_endpoint, "us-east-1")
    assert [(f.rel, f.size) for f in files] == [("a.html", 8), ("sub/b.html", 9)]  # not crawl-old/
    first = _identity(uri, endpoint_url=s3_endpoint, region="us-east-1")
    content = _identity(uri, content=True, endpoint_url=s3_endpoint, region="us-east-1")
    client.put_object(Bucket=s3_bucket, Key="crawl/a.html", Body=b"<p>A</p>")  # same size, new ETag
    assert _identity(uri, endpoint_url=s3_endpoint, region="us-east-1")["digest"] != first["digest"]
    assert _identity(uri, content=True, endpoint_url=s3_endpoint, region="us-east-1")["digest"] != content["digest"]
    with pytest.raises(InputError, match=f"s3://{s3_bucket}/nothing-here: input not found"):
        _identity(f"s3://{s3_bucket}/nothing-here", endpoint_url=s3_endpoint, region="us-east-1")


def test_curate_reads_an_s3_prefix(s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    """A spec whose curate.sources is an s3:// prefix on a real S3 endpoint curates, like the same local files."""
    from factory.spec import parse_spec
    from factory.steps import Executor

    pages = small_corpus(tmp_path / "html", n=16)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for f in sorted(pages.iterdir()):
        client.upload_file(str(f), s3_bucket, f"web/html/{f.name}")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # curate reads through the spec's endpoint, as planning lists
    data = small_spec_data(tmp_path, curate={"sources": [f"s3://{s3_bucket}/web/html"]})
    data["storage"]["endpoint_url"] = s3_endpoint
    data["storage"]["region"] = "us-east-1"
    data["stages"] = {"curate": data["stages"]["curate"]}
    spec = parse_spec(yaml.safe_load(yaml.safe_dump(data))).resolved()
    executor = Executor(spec)
    step = executor.plan()["curate"]
    (source,) = step.recipe["sources"]["sources"]
    assert source["uri"] == f"s3://{s3_bucket}/web/html" and source["files"] == len(list(pages.iterdir()))
    manifest = executor.run(["curate"])["curate"]
    records = corpus_records(executor.store.folder(step.key))
    assert manifest["metrics"]["docs_out"] == len(records) > 0
    # the same pages, copied locally under the prefix's last name, are what curate read
    local = local_sources([f"s3://{s3_bucket}/web/html"], tmp_path / "scratch", s3_endpoint, "us-east-1")
    assert sorted(p.name for p in (tmp_path / "scratch").rglob("*.htm*")) == sorted(p.name for p in pages.iterdir() if p.suffix.startswith(".htm"))
    assert local[0].endswith("/html")


def test_content_hash_is_opt_in_per_input(tmp_path):
    from factory.sources import source_digests
    from factory.spec import parse_spec

    for name in ("html", "more"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.html").write_text(f"<p>{name}</p>")
    sources = [str(tmp_path / "html"), str(tmp_path / "more")]
    plain = parse_spec(small_spec_data(tmp_path, curate={"sources": sources})).resolved()
    opted = parse_spec(small_spec_data(tmp_path, curate={"sources": sources, "content_hash": [str(tmp_path / "more") + "/"]})).resolved()
    input_identity.cache_clear()
    assert [e["identity"] for e in source_digests("curate", plain.stage_config("curate"))["sources"]] == ["listing", "listing"]
    assert [e["identity"] for e in source_digests("curate", opted.stage_config("curate"))["sources"]] == ["listing", "content"]


def test_a_device_or_a_pipe_is_not_an_input(tmp_path):
    """`content_hash` over `/dev/zero` read forever, and a listing of it let curate do the same."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        for content in (False, True):
            with pytest.raises(InputError, match=r": not a regular file or a folder \(a device, pipe or socket cannot be an input\)"):
                _identity(path, content=content)
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "a.html").write_text("<p>a</p>")
    os.symlink("/dev/zero", tmp_path / "html" / "zero.html")  # inside a folder: skipped, as every non-regular file is
    assert _identity(str(tmp_path / "html"), content=True)["files"] == 1
