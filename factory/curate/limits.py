"""How large one input unit (a page, a WARC record's header or gzip member, a JSONL line) may be: the readers'
defaults and the curate config's. Apart from the readers, which import datatrove, since loading a spec reads them."""

DEFAULT_MAX_PAGE_BYTES = 5_000_000
DEFAULT_MAX_HEADER_BYTES = 65_536
DEFAULT_MAX_MEMBER_BYTES = 64 * 1024 * 1024
