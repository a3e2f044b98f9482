"""The corpus layout (factory.documents): parts, byte-stable output, and damage counted, not raised."""

from __future__ import annotations

import gzip
import random
import string
from collections import Counter

import pytest

from factory.documents import check_error_budget, document_files, read_records, valid_text, write_parts
from factory.errors import InputError


def test_parts_hold_per_part_records_in_order_and_bytes_depend_only_on_the_records(tmp_path):
    records = [{"text": f"doc {i} é", "id": f"d{i}", "metadata": {"b": 1, "a": 2}} for i in range(7)]
    assert write_parts(iter(records), tmp_path / "a" / "documents", per_part=3) == 3
    assert [p.name for p in document_files(tmp_path / "a")] == ["part-00000.jsonl.gz", "part-00001.jsonl.gz", "part-00002.jsonl.gz"]
    assert list(read_records(document_files(tmp_path / "a"), Counter())) == records
    with gzip.open(tmp_path / "a" / "documents" / "part-00002.jsonl.gz", "rt", encoding="utf-8") as f:
        assert f.read() == '{"id": "d6", "metadata": {"a": 2, "b": 1}, "text": "doc 6 é"}\n'  # keys sorted, not escaped

    write_parts(records, tmp_path / "b" / "documents", per_part=3)
    assert [p.read_bytes() for p in document_files(tmp_path / "a")] == [p.read_bytes() for p in document_files(tmp_path / "b")]
    assert write_parts(records[:6], tmp_path / "c" / "documents", per_part=3) == 2  # no trailing empty part


def test_lone_surrogates_are_written_as_replacement_characters(tmp_path):
    # a JSON `\\udc80` escape decodes to a lone surrogate, which UTF-8 cannot encode: the writer raised
    # UnicodeEncodeError and the stage lost its corpus
    records = [{"id": "a\ud800", "text": "ok", "metadata": {"url": "https://example.org/\udfff", "tags": ["\udc80"]}},
               {"id": "b", "text": "fine 😀", "metadata": {}}]
    write_parts(records, tmp_path / "documents", per_part=10)
    assert list(read_records(document_files(tmp_path), Counter())) == [
        {"id": "a\ufffd", "text": "ok", "metadata": {"url": "https://example.org/\ufffd", "tags": ["\ufffd"]}},
        {"id": "b", "text": "fine 😀", "metadata": {}}]
    assert valid_text("plain") == "plain" and valid_text("x\udcff😀") == "x\ufffd😀"


def test_an_empty_corpus_is_one_empty_part(tmp_path):
    assert write_parts([], tmp_path / "documents", per_part=10) == 1
    [part] = document_files(tmp_path)
    assert part.name == "part-00000.jsonl.gz" and gzip.decompress(part.read_bytes()) == b""


def test_bad_lines_and_damaged_files_are_counted_and_what_came_before_is_kept(tmp_path):
    rng = random.Random(0)  # text that does not compress away, so a cut lands inside the records
    texts = ["".join(rng.choices(string.ascii_letters, k=200)) for _ in range(40)]
    write_parts([{"id": str(i), "text": t} for i, t in enumerate(texts)], tmp_path / "documents", per_part=20)
    first, second = document_files(tmp_path)
    with gzip.open(first, "at") as f:  # a second gzip member with a line that is not JSON
        f.write('{"id": "cut\n')
    second.write_bytes(second.read_bytes()[:300])  # truncated mid-stream
    skipped: Counter = Counter()
    got = list(read_records([first, second], skipped, bad_line="lines", bad_file="files"))
    assert [r["id"] for r in got[:20]] == [str(i) for i in range(20)] and len(got) < 40
    assert skipped == {"lines": 1, "files": 1}


def test_a_damaged_line_is_within_the_budget_or_fails_with_one_line_naming_it(tmp_path):
    write_parts([{"id": str(i), "text": f"doc {i}"} for i in range(199)], tmp_path / "documents", per_part=200)
    [part] = document_files(tmp_path)
    with gzip.open(part, "at") as f:  # a torn line at the end, as a killed writer leaves it
        f.write('{"id": "torn", "te\n')
    skipped: Counter = Counter()
    assert len(list(read_records([part], skipped, max_error_fraction=0.01))) == 199  # 1 of 200: within 1%
    assert skipped == {"bad_json": 1}
    with gzip.open(part, "at") as f:
        f.write("not json\n" * 4)
    with pytest.raises(InputError) as info:
        list(read_records([part], Counter(), max_error_fraction=0.01, what="tokenize: corpus"))
    assert str(info.value) == ("tokenize: corpus: 5 of 204 records (2.5%) are damaged, over the error budget of 1.0% "
                               "(max_error_fraction): bad_json 5; first at part-00000.jsonl.gz line 200")


def test_check_error_budget_lists_the_top_reasons():
    check_error_budget("x", {"a": 1}, 100, 0.01)  # at the bound: passes
    check_error_budget("x", {}, 0, 0.0)
    with pytest.raises(InputError, match=r"^x: 9 of 100 records \(9.0%\) .* c 5, a 2, b 1; first at f offset 3$"):
        check_error_budget("x", {"a": 2, "b": 1, "c": 5, "d": 1}, 100, 0.05, "f offset 3")
