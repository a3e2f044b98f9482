"""AceReason's curriculum is configuration: math-only then code-only RL are two named steps of kind rl in one
spec, each with its own growing response-length schedule, the second starting from the first's model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.errors import SpecError
from factory.spec import load_spec
from tests.spine import ROOT

EXAMPLE = ROOT / "examples" / "posttrain.yaml"


def with_code_step(tmp_path: Path, rl_code: dict) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    steps = dict(data["steps"])
    steps = {k: v for k, v in steps.items() if k not in ("evaluate", "release")}
    steps["rl_code"] = rl_code
    steps["evaluate"] = {**data["steps"]["evaluate"], "inputs": {**data["steps"]["evaluate"]["inputs"], "model": "rl_code"}}
    steps["release"] = {**data["steps"]["release"], "inputs": {"model": "rl_code", "tokens": "tokenize", "evaluation": "evaluate"}}
    path = tmp_path / "curriculum.yaml"
    path.write_text(yaml.safe_dump({**data, "steps": steps}))
    return path


def test_math_then_code_rl_are_two_named_steps(tmp_path):
    code_schedule = [{"until_fraction": 0.5, "max_new_tokens": 96}, {"until_fraction": 1.0, "max_new_tokens": 128}]
    spec = load_spec(with_code_step(tmp_path, {"kind": "rl", "inputs": {"model": "rl_math", "data": "posttrain_data"},
                                               "config": {"verifiers": ["code"], "rollout": {"length_schedule": code_schedule}}}))
    assert spec.enabled()[-4:] == ["rl_math", "rl_code", "evaluate", "release"]
    assert spec.kind_of("rl_math") == spec.kind_of("rl_code") == "rl"
    assert spec.inputs_of("rl_code") == {"model": "rl_math", "data": "posttrain_data"}
    math_config, code_config = spec.stage_config("rl_math"), spec.stage_config("rl_code")
    assert math_config.verifiers == ["math"] and code_config.verifiers == ["code"]
    assert [s.max_new_tokens for s in math_config.rollout.length_schedule] == [48, 64]  # each grows
    assert [code_config.rollout.max_new_tokens(f) for f in (0.0, 0.75)] == [96, 128]
    assert spec.inputs_of("release")["model"] == "rl_code"  # the release is the post-trained model


def test_a_wrong_rl_field_names_its_path(tmp_path):
    path = with_code_step(tmp_path, {"kind": "rl", "inputs": {"model": "rl_math", "data": "posttrain_data"},
                                     "config": {"verifiers": ["poetry"]}})
    with pytest.raises(SpecError, match=r"steps\.rl_code\.config\.verifiers"):
        load_spec(path)
