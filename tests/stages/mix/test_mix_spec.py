"""How a spec wires the mix step: between synth and tokenize, in the default recipe and in the compiled pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli.main import compile_pipeline
from factory.errors import SpecError
from factory.spec import parse_spec

ROOT = Path(__file__).resolve().parents[3]


def _smoke() -> dict:
    return yaml.safe_load((ROOT / "examples" / "smoke.yaml").read_text())


def test_mix_sits_between_synth_and_tokenize(tmp_path):
    data = _smoke()
    data["stages"]["synth"] = {"generator": {"kind": "openai", "base_url": "http://vllm:8000", "model": "generator"}}
    data["stages"]["mix"] = {"clusters": 8, "super_clusters": 3}
    spec = parse_spec(data)
    assert spec.enabled().index("synth") < spec.enabled().index("mix") < spec.enabled().index("tokenize")
    assert spec.inputs_of("mix") == {"corpus": "curate", "synthetic": "synth"}
    assert spec.inputs_of("tokenize") == {"corpus": "mix", "synthetic": "synth"}  # one dataset per super-cluster
    assert spec.inputs_of("pretrain") == {"tokens": "tokenize"}  # its blend travels in the tokens artifact
    ir = next(yaml.safe_load_all(compile_pipeline(spec, tmp_path / "p.yaml").read_text()))
    steps = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    wired = {k: v["taskOutputArtifact"]["producerTask"] for k, v in steps["mix"]["inputs"]["artifacts"].items()}
    assert wired == {"corpus": "curate", "synthetic": "synth"}
    assert steps["tokenize"]["inputs"]["artifacts"]["corpus"]["taskOutputArtifact"]["producerTask"] == "mix"


def test_bad_mix_settings_name_the_field():
    data = _smoke()
    data["stages"]["mix"] = {"clusters": 4, "super_clusters": 6}
    with pytest.raises(SpecError, match="stages.mix"):
        parse_spec(data)
    data["stages"]["mix"] = {"rounds": 1, "proxies_per_round": 3, "predictor_folds": 2}  # a fold of 1 proxy to fit on
    with pytest.raises(SpecError, match="stages.mix.*3 proxies .1 rounds x 3. in 2 folds"):
        parse_spec(data)
    data["stages"]["mix"] = {"proxy": {"model": {"preset": "huge"}}}
    with pytest.raises(SpecError, match="model.preset: unknown preset 'huge'"):
        parse_spec(data)
