"""The `factory` command: user mistakes are one clear message and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.spine import ROOT, small_spec_data


def factory(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300)


def test_bad_spec_field_exits_2_naming_the_path(tmp_path):
    data = small_spec_data(tmp_path)
    data["stages"]["pretrain"]["lr"] = "fast"
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(data))
    r = factory("explain", str(spec))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "error: stages.pretrain.lr: Input should be a valid number, unable to parse string as a number"


def test_missing_input_folder_exits_2(tmp_path):
    data = small_spec_data(tmp_path)  # sources point at tmp/html, which does not exist
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    r = factory("explain", str(spec))
    assert r.returncode == 2
    assert f"stages.curate.sources: {tmp_path / 'html'}: input not found" in r.stderr


def test_unreachable_tracking_uri_exits_2(tmp_path):
    data = small_spec_data(tmp_path)
    data["tracking"] = {"uri": "http://127.0.0.1:9"}
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "a.html").write_text("<html><body><p>hello</p></body></html>")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    r = factory("run", str(spec))
    assert r.returncode == 2
    assert "tracking.uri: cannot reach the MLflow server at http://127.0.0.1:9" in r.stderr


def test_unknown_stage_and_missing_spec_exit_2(tmp_path):
    r = factory("step", "pretrian", str(ROOT / "examples" / "smoke.yaml"))
    assert r.returncode == 2 and "no step 'pretrian'" in r.stderr
    r = factory("explain", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "spec file not found" in r.stderr


def test_lineage_of_a_non_artifact_exits_2(tmp_path):
    r = factory("lineage", str(tmp_path))
    assert r.returncode == 2 and "no manifest here" in r.stderr


def test_failed_pipeline_exits_nonzero(tmp_path):
    """A stage failing inside kfp.local makes `factory run` exit 1 with one line naming the step and its error."""
    data = small_spec_data(tmp_path)
    (tmp_path / "html").mkdir()
    # One page that every filter removes: curate publishes an empty corpus and tokenize fails on it.
    (tmp_path / "html" / "a.html").write_text("<html><body><p>x</p></body></html>")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    r = factory("run", str(spec))
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    # One line names the step and its own error, and where kfp.local's output went; nothing else is printed.
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith("error: step tokenize failed: ") and "no documents" in error, r.stderr[-2000:]
    log = Path(error.rsplit("(full log: ", 1)[1].rstrip(")"))
    assert log.parent == tmp_path / "work" / "logs" and "Executing task" in log.read_text()
    assert "executor_input" not in r.stdout + r.stderr.replace(str(log), "")


def test_curate_command_runs_the_stage_on_files(tmp_path):
    from tests.spine import SMOKE_HTML

    pages = sorted(SMOKE_HTML.glob("*.html"))[:12]
    r = factory("curate", *map(str, pages), "--out", str(tmp_path / "corpus"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["docs_in"] == 12 and 0 < summary["docs_out"] <= 12
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert manifest["kind"] == "corpus" and manifest["metrics"]["docs_out"] == summary["docs_out"]
    r = factory("curate", str(tmp_path / "missing.html"), "--out", str(tmp_path / "c2"))
    assert r.returncode == 2 and "missing.html" in r.stderr
