"""Spec and path abuses through the real `factory` command: each ends in one line on stderr and exit 2, in seconds,
and nothing is written outside the work folder and the store (each command runs in an empty folder, with HOME and
TMPDIR empty folders of their own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "examples" / "data" / "smoke-html"


@pytest.fixture
def place(tmp_path: Path) -> Path:
    for folder in ("cwd", "home", "tmp", "run"):
        (tmp_path / folder).mkdir()
    return tmp_path


def factory(place: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(place / "home"), "TMPDIR": str(place / "tmp")}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=place / "cwd", env=env, check=False,
                          timeout=120)


def spec(place: Path, body: str = "", *, work_dir: str = "", storage: str = "", steps: str = "", name: str = "abuse.yaml") -> str:
    """A small spec (curate on the smoke pages) whose work folder and store are under run/, unless given; `body` adds
    top-level fields."""
    work_dir = work_dir or str(place / "run" / "work")
    storage = storage or f"{{root: {place / 'run' / 'store'}}}"
    text = (f"name: abuse\nwork_dir: {work_dir}\nstorage: {storage}\n{body}"
            + (steps or f"steps:\n  curate:\n    kind: curate\n    config: {{sources: [{PAGES}]}}\n"))
    path = place / name
    path.write_text(text)
    return str(path)


def assert_one_line(proc: subprocess.CompletedProcess, message: str, place: Path) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and re.search(message, errors[0]), proc.stderr[-2000:]
    assert [p for d in ("cwd", "home", "tmp") for p in (place / d).iterdir()] == []


def _file(place: Path) -> Path:
    (place / "run" / "a-file").write_text("not a folder")
    return place / "run" / "a-file"


def _alias_bomb() -> str:
    lines = ["    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "model:\n  preset: tiny\n  overrides:\n" + "\n".join(lines) + "\n"


CASES = [  # (id, command, spec(place), the error line)
    ("work_dir_unwritable_plan", "plan --log", lambda p: spec(p, work_dir=f"{_file(p)}/work"),
     r"^error: work_dir: cannot create the folder .*a-file/work \(Not a directory\)"),
    ("work_dir_unwritable_run", "run", lambda p: spec(p, work_dir=f"{_file(p)}/work"),
     r"^error: work_dir: cannot create the folder"),
    ("work_dir_unwritable_step", "step curate", lambda p: spec(p, work_dir=f"{_file(p)}/work"),
     r"^error: work_dir: cannot create the folder"),
    ("store_unwritable_run", "run", lambda p: spec(p, storage=f"{{root: {_file(p)}/store}}"),
     r"^error: storage\.root: cannot create the folder"),
    ("work_dir_empty", "plan", lambda p: spec(p, work_dir="''"), r"^error: work_dir: empty: name a folder"),
    ("tracking_unwritable", "plan --log", lambda p: spec(p, f"tracking: {{uri: 'sqlite:///{_file(p)}/mlflow.db'}}\n"),
     r"^error: tracking\.uri: cannot create the folder of the tracking database"),
    ("step_name_300", "explain",
     lambda p: spec(p, steps=f"steps:\n  {'a' * 300}:\n    kind: curate\n    config: {{sources: [{PAGES}]}}\n"),
     r"^error: steps\.a{60}\.\.\. \(300 characters\): a step name is at most 40"),
    ("step_name_300_on_the_command_line", f"step {'a' * 300}", lambda p: spec(p), r"^error: no step 'a{60}' in "),
    ("content_hash_device", "explain",
     lambda p: spec(p, steps="steps:\n  curate:\n    kind: curate\n    config: {sources: [/dev/zero], content_hash: [/dev/zero]}\n"),
     r"^error: stages\.curate\.sources: /dev/zero: not a regular file or a folder"),
    ("alias_bomb", "plan", lambda p: spec(p, _alias_bomb()), r"more than 1,000,000 values once its YAML aliases are expanded"),
    ("device_spec", "plan", lambda p: "/dev/zero", r"^error: /dev/zero: not a regular file"),
    ("duplicate_key", "run", lambda p: spec(p, "name: other\n"), r"key 'name' appears twice in one mapping \(lines 1 and 4\)"),
]


@pytest.mark.parametrize(("command", "make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_spec_abuse_ends_in_one_line_and_exit_2(place, command, make, message):
    *words, = command.split()
    proc = factory(place, *words, make(place))
    assert_one_line(proc, message, place)


def test_a_missing_bucket_ends_in_one_line_and_exit_2(place, s3_endpoint):
    path = spec(place, storage=f"{{root: 's3://no-such-bucket/store', endpoint_url: '{s3_endpoint}', region: us-east-1}}")
    assert_one_line(factory(place, "explain", path), r"^error: storage\.root: bucket 'no-such-bucket' does not exist", place)


def test_an_endpoint_that_never_answers_ends_in_one_line(place, monkeypatch, capsys):
    """In-process (the timeouts shortened): `factory explain` against an S3 endpoint that accepts and never answers."""
    import socket
    import threading

    from cli.main import main
    from factory import sources

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(16)], daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    path = spec(place, storage=f"{{root: 's3://bucket/store', endpoint_url: '{endpoint}', region: us-east-1}}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setattr(sources, "S3_READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(sys, "argv", ["factory", "explain", path])
    sources.s3_client.cache_clear()
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sources.s3_client.cache_clear()
        server.close()
        for conn, _ in held:
            conn.close()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert exit_.value.code == 2 and len(errors) == 1
    assert re.match(rf"^error: storage\.root: reading a manifest in bucket 'bucket' at {endpoint} failed: Read timeout", errors[0])


def test_explain_and_plan_write_only_in_the_work_folder(place):
    """`factory explain` made a folder outside the work folder; explain and plan write nothing, plan --log only its
    tracking database in the work folder."""
    path = spec(place)
    explained = factory(place, "explain", path)
    assert explained.returncode == 0 and "never built" in explained.stdout, explained.stderr[-2000:]
    assert list((place / "run").iterdir()) == []
    planned = factory(place, "plan", path)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert list((place / "run").iterdir()) == []
    logged = factory(place, "plan", "--log", path)
    assert logged.returncode == 0, logged.stderr[-2000:]
    assert [p.name for p in (place / "run").iterdir()] == ["work"]
    assert [p for d in ("cwd", "home", "tmp") for p in (place / d).iterdir()] == []
