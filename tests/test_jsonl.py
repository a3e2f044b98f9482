"""JSON Lines in one place: plain and gzip files, errors naming file and line, models, atomic writes."""

import gzip
import json

import pytest
from pydantic import BaseModel, ConfigDict

from factory.errors import InputError
from factory.jsonl import json_objects, read_models, read_objects, write_objects


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    n: int
    note: str | None = None


def test_plain_and_gzip_files_read_alike(tmp_path):
    rows = [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    assert write_objects(tmp_path / "rows.jsonl", [Row(**rows[0]), rows[1]]) == 2  # a model drops its None fields
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress((tmp_path / "rows.jsonl").read_bytes() + b"\n  \n"))
    assert read_objects(tmp_path / "rows.jsonl") == read_objects(tmp_path / "rows.jsonl.gz") == rows
    assert [n for n, _ in json_objects(tmp_path / "rows.jsonl.gz")] == [1, 2]
    assert read_models(tmp_path / "rows.jsonl", Row) == [Row(**r) for r in rows]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize("text, message", [
    ('{"id": "a", "n": 1}\n{oops\n', r"bad.jsonl:2: not JSON"),
    ('{"id": "a", "n": 1}\n\n[1]\n', r"bad.jsonl:3: a record is a JSON object, got list"),
    ('{"id": "a", "n": "x"}\n', r"bad.jsonl:1: record 'a': n: Input should be a valid integer"),
    ('{"n": 1}\n', r"bad.jsonl:1: id: Field required"),
])
def test_errors_name_file_and_line(tmp_path, text, message):
    (tmp_path / "bad.jsonl").write_text(text)
    with pytest.raises(InputError, match=message):
        read_models(tmp_path / "bad.jsonl", Row)


def test_unreadable_files_are_input_errors(tmp_path):
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(json.dumps({"n": 1}).encode())[:-6])
    (tmp_path / "latin1.jsonl").write_bytes(b'{"t": "\xe9"}\n')
    for name in ("cut.jsonl.gz", "latin1.jsonl", "missing.jsonl"):
        with pytest.raises(InputError, match=f"{name}: not readable"):
            read_objects(tmp_path / name)
