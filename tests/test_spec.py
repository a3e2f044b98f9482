"""The spec: loads the smoke spec, and every wrong field is one error that names its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.errors import InputError, SpecError
from factory.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "examples" / "smoke.yaml"


def smoke_data() -> dict:
    return yaml.safe_load(SMOKE.read_text())


def test_smoke_spec_loads_and_orders_stages():
    spec = load_spec(SMOKE)
    assert spec.name == "smoke"
    assert spec.enabled() == ["quality", "curate", "tokenize", "pretrain", "evaluate", "release"]
    assert spec.inputs_of("curate") == {"quality": "quality"} and spec.inputs_of("tokenize") == {"corpus": "curate"}
    # The top-level model preset is handed to the pretrain stage.
    assert spec.stages.pretrain.model.preset == "tiny"
    assert spec.tracking_uri().startswith("sqlite:///")


def test_spec_is_frozen():
    spec = load_spec(SMOKE)
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["stages"]["pretrain"].update(lr="fast"), r"^stages\.pretrain\.lr: Input should be a valid number"),
        (lambda d: d["stages"]["tokenize"].update(vocab_sise=10), r"^stages\.tokenize\.vocab_sise: unknown field"),
        (lambda d: d.update(name="Bad Name"), r"^name: String should match pattern"),
        (lambda d: d["resources"].update(pretrian={"cpu": "1"}), r"^resources\.pretrian: no such step"),
        (lambda d: d["stages"].pop("tokenize"), r"^stages\.pretrain: needs stage 'tokenize', which is absent"),
        (lambda d: d["stages"]["curate"].update(gopher_quality={"min_doc_words": "x"}),
         r"^stages\.curate\.gopher_quality\.min_doc_words: Input should be a valid integer"),
        (lambda d: d["model"].update(preset="huge"), r"^model\.preset: unknown preset 'huge'"),
    ],
)
def test_bad_field_names_its_path(edit, message):
    data = smoke_data()
    edit(data)
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_bad_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: smoke\nstages: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML at line 3"):
        load_spec(p)


def test_missing_spec_file(tmp_path):
    with pytest.raises(InputError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_resolved_makes_local_paths_absolute(tmp_path):
    spec = load_spec(SMOKE).resolved(tmp_path)
    assert spec.work_dir == str(tmp_path / "runs" / "smoke")
    assert spec.stages.curate.sources == [str(tmp_path / "examples" / "data" / "smoke-html")]
    s3 = parse_spec({**smoke_data(), "storage": {"root": "s3://bucket/x"}}).resolved(tmp_path)
    assert s3.storage.root == "s3://bucket/x"


def test_cluster_example_loads_and_launches_pretrain():
    spec = load_spec(ROOT / "examples" / "cluster.yaml")
    assert spec.storage.root.startswith("s3://")
    assert spec.needs_launcher("pretrain") and not spec.needs_launcher("evaluate")
    assert spec.image_for("evaluate") == "nemotron-factory/factory-gpu:0.1.0"
    assert spec.image_for("tokenize") == "nemotron-factory/factory-cpu:0.1.0"
    assert spec.stages.pretrain.model.preset == "small_20m"
    assert spec.enabled() == ["quality", "curate", "synth", "tokenize", "pretrain", "evaluate", "release"]
    assert spec.inputs_of("tokenize") == {"corpus": "curate", "synthetic": "synth"} and spec.needs_launcher("curate")


def test_evaluate_task_files_join_curate_decontamination_sets(tmp_path):
    data = smoke_data()
    data["stages"]["evaluate"]["task_files"] = ["evals/qa.jsonl", "evals/cloze.jsonl"]
    data["stages"]["curate"]["decontamination_sets"] = ["./evals/qa.jsonl", "more/"]
    spec = parse_spec(data)
    assert spec.stages.curate.decontamination_sets == ["./evals/qa.jsonl", "more/", "evals/cloze.jsonl"]
    assert spec.stages.evaluate.task_files == ["evals/qa.jsonl", "evals/cloze.jsonl"]
    # resolved against the spec's folder like any other external input, so curate's fingerprint digests them
    (tmp_path / "evals").mkdir()
    assert spec.resolved(tmp_path).stages.curate.decontamination_sets[-1] == str(tmp_path / "evals/cloze.jsonl")
