"""Planning cost of raw inputs: listing identity (factory.sources) against the full-read digest it replaced.

A step's fingerprint includes the identity of its raw inputs. The factory used to read every byte of every
input file (sha256 of the contents); now an input is identified by its listing (relative path, size, ETag
or mtime) and content hashing is opt-in. This measures both on the same files, on local disk and on an S3
endpoint (moto's server on 127.0.0.1, objects put straight into its backend so setup stays fast; listing
and reading go over HTTP as against any S3 service), for growing file counts.

    .venv/bin/python bench/plan.py                          # 1k, 10k, 100k, local and S3; ~2 min on 2 cores
    .venv/bin/python bench/plan.py --s3-counts 1000 10000   # without S3 at 100k (~20 s)

moto's server lists a whole bucket and sorts it for every page of 1000 keys, so on it listing time per key
grows with the bucket (2x per key at 100k); a real S3 service answers a page in constant time. Measured idle on
2 cores: 100k files plan in 1.2 s on local disk (full read 2.3 s, page-cached) and 40 s on moto, whose
full-read digest (one GET per file) takes 4 s per 1k files.

The full-read digest runs up to --full-read-max files locally and --s3-full-read-max on S3 (one GET per file
through moto's single-threaded server: 10k take minutes).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from factory.sources import input_identity


def _timed(fn) -> float:
    input_identity.cache_clear()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _make_local(root: Path, n: int, size: int) -> None:
    # 100 files a folder, as a crawl's shards are laid out
    for i in range(n):
        folder = root / f"{i // 100:05d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        with open(folder / f"{i:07d}.html", "wb") as fh:
            fh.write(os.urandom(size))


def _moto():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def _bucket(endpoint: str, name: str) -> str:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _put_s3(bucket: str, prefix: str, n: int, size: int) -> None:
    """Objects put into moto's in-process backend directly: the same bucket the HTTP endpoint serves."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for i in range(n):
        backend.put_object(bucket, f"{prefix}/{i // 100:05d}/{i:07d}.html", os.urandom(size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000, 100000], help="files per input, local disk")
    parser.add_argument("--s3-counts", type=int, nargs="+", default=[1000, 10000, 100000], help="files per input, S3 (moto)")
    parser.add_argument("--file-bytes", type=int, default=2048, help="size of each file")
    parser.add_argument("--full-read-max", type=int, default=100000, help="largest count the full-read digest runs on, local disk")
    parser.add_argument("--s3-full-read-max", type=int, default=1000, help="largest count the full-read digest runs on, S3")
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    args = parser.parse_args()

    print(f"{'where':<6} {'files':>7} {'MB':>7} {'listing s':>10} {'full read s':>12} {'listing us/file':>16} {'speed-up':>9}")
    rows = []
    server = None
    try:
        if not args.no_s3:
            server, endpoint = _moto()
        with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
            for n in sorted(set(args.counts) | set([] if args.no_s3 else args.s3_counts)):
                wheres = (["local"] if n in args.counts else []) + (["s3"] if n in args.s3_counts and not args.no_s3 else [])
                for where in wheres:
                    if where == "local":
                        uri, kw = str(Path(tmp) / f"in-{n}"), {}
                        _make_local(Path(uri), n, args.file_bytes)
                    else:
                        bucket = _bucket(endpoint, f"bench-plan-{n}")  # one bucket per count: moto lists a whole bucket per page
                        uri, kw = f"s3://{bucket}/in", {"endpoint_url": endpoint, "region": "us-east-1"}
                        _put_s3(bucket, "in", n, args.file_bytes)
                    listing = _timed(lambda: input_identity(uri, **kw))
                    limit = args.full_read_max if where == "local" else args.s3_full_read_max
                    full = _timed(lambda: input_identity(uri, content=True, **kw)) if n <= limit else None
                    rows.append((where, n, listing))
                    full_s = f"{full:12.2f}" if full is not None else f"{'skipped':>12}"
                    speedup = f"{full / listing:8.1f}x" if full is not None else f"{'-':>9}"
                    print(f"{where:<6} {n:>7} {n * args.file_bytes / 1e6:>7.1f} {listing:>10.2f} {full_s} "
                          f"{listing / n * 1e6:>16.1f} {speedup}", flush=True)
    finally:
        if server is not None:
            server.stop()
    # linear growth: time per file at the largest count against the smallest
    for where in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == where]
        if len(mine) > 1:
            (_, n0, t0), (_, n1, t1) = mine[0], mine[-1]
            print(f"{where}: listing time per file at {n1} files is {(t1 / n1) / (t0 / n0):.2f}x that at {n0} (1.0 = linear)")


if __name__ == "__main__":
    main()
