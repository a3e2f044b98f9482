"""A spec that needs an absent system program fails when it is resolved to run, in one line, before any step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from factory.errors import SpecError
from factory.spec import parse_spec
from factory.system_tools import missing_tools
from tests.spine import ROOT, small_spec_data


def _spec(tmp_path, **math):
    data = small_spec_data(tmp_path, curate={"math": math} if math else {})
    (tmp_path / "html").mkdir(exist_ok=True)
    return data


def test_default_spec_needs_no_system_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH at all
    spec = parse_spec(_spec(tmp_path))
    assert spec.stages.curate.math.renderer == "builtin"
    assert missing_tools(spec) == []
    spec.resolved()


def test_lynx_renderer_without_lynx_fails_at_resolve_naming_field_and_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = parse_spec(_spec(tmp_path, renderer="lynx"))
    assert missing_tools(spec) == [("stages.curate.math.renderer", "lynx")]
    with pytest.raises(SpecError) as err:
        spec.resolved()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("stages.curate.math.renderer: needs the system program 'lynx'") and "apt-get install -y lynx" in message
    # switched off, the math path asks for nothing
    assert missing_tools(parse_spec(_spec(tmp_path, renderer="lynx", enabled=False))) == []


def test_code_benchmarks_need_bubblewrap_unless_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    data = _spec(tmp_path)
    data["stages"]["evaluate"] = {"benchmarks": [{"name": "he", "source": "humaneval", "limit": 2}]}
    spec = parse_spec(data)
    assert missing_tools(spec) == [("stages.evaluate.sandbox_isolation", "bwrap")]
    with pytest.raises(SpecError, match=r"^stages.evaluate.sandbox_isolation: needs the system program 'bwrap'.*apt-get install -y bubblewrap"):
        spec.resolved()
    data["stages"]["evaluate"]["sandbox_isolation"] = "none"  # trusted code: no sandbox asked for
    assert missing_tools(parse_spec(data)) == []


def test_factory_run_stops_before_any_step(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path, renderer="lynx")))
    env = {**os.environ, "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "cli", "run", str(path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: stages.curate.math.renderer: needs the system program 'lynx'")
    assert not (tmp_path / "work").exists()  # nothing started: no work folder, no MLflow database
