"""What reading one input may cost: the readers' caps, and the curate config's defaults for them. Apart from the
readers, which import datatrove, since loading a spec reads them.

The defaults keep a crawl safe and read every page a crawl holds: a unit (a page, a WARC record's header block, a
JSONL line) is capped in bytes; what a gzip member and a file may expand to is capped in bytes far above a real
crawl's (a whole WARC gzipped as one member is read), and by expansion ratio (a bomb is stopped within a few
megabytes, whatever its size); a file may hold a bounded number of records per KiB on disk (gzipped millions of tiny
lines). Every cap is deterministic (bytes and counts, never seconds), so the same input gives the same corpus on any
machine, at any load.
"""

DEFAULT_MAX_PAGE_BYTES = 5_000_000
DEFAULT_MAX_HEADER_BYTES = 65_536
DEFAULT_MAX_MEMBER_BYTES = 64 * 1024 * 1024  # held whole (CRC checked) before parsing; a larger member streams
DEFAULT_MAX_FILE_BYTES = 64 << 30
# real crawls expand 3-10x (HTML, text); deflate tops out near 1032x, a run of one byte
DEFAULT_MAX_EXPANSION_RATIO = 100.0
# a web page's record takes 50 bytes or more gzipped (20 a KiB); a JSONL line of junk 2 (a number and a line end)
DEFAULT_MAX_RECORDS_PER_KIB = 256
RECORDS_FLOOR = 100_000  # records any file may hold, however small (a few hundred milliseconds of skips)
DEFAULT_EXTRACT_MEMORY_MB = 1024  # a 5 MB page takes 100-500 MB in resiliparse or trafilatura
