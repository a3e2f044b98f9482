"""The registry of stage kinds: it agrees with the stage modules and the KFP components, and adding a
kind is one module plus one entry, run end to end here with a toy kind."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing

import yaml

from components.generate import body
from factory.kinds import KINDS, RECIPE
from tests.spine import ROOT


def test_every_kind_loads_and_its_component_takes_exactly_its_inputs():
    for name, kind in KINDS.items():
        assert callable(kind.run) and issubclass(kind.config, __import__("factory.stage").stage.StageConfig)
        params = inspect.signature(body(name)).parameters
        assert list(params)[:4] == ["spec", "step", "plan", "job_id"] and "artifact" in params
        inputs = {p: v for p, v in params.items() if p not in ("spec", "step", "plan", "job_id", "artifact")}
        assert set(inputs) == set(kind.inputs)
        for input_name, spec_in in kind.inputs.items():
            optional = inputs[input_name].default is None and type(None) in typing.get_args(inputs[input_name].annotation)
            assert optional == spec_in.optional, f"{name}.{input_name}"
    assert [name for name, _ in RECIPE] == list(KINDS)  # the recipe runs every kind, in the registry's order
    for name, feeds in RECIPE:
        assert set(feeds) <= set(KINDS[name].inputs), name
        for input_name, ups in feeds.items():
            # the default recipe feeds each input from earlier steps that make what it takes
            assert all(KINDS[up].output == KINDS[name].inputs[input_name].kind for up in ups), f"{name}.{input_name}"
            assert all(list(KINDS).index(up) < list(KINDS).index(name) for up in ups), f"{name}.{input_name}"


TOY = """
import json, sys
from pathlib import Path
from factory.kinds import KINDS, In, StageKind

# The one registry entry of the toy kind (its package is tests/toy_kind/).
KINDS["wordcount"] = StageKind("tests.toy_kind", output="counts", inputs={"previous": In("counts", optional=True)})

from cli.main import compile_pipeline
from factory.lineage import chain
from factory.spec import parse_spec
from factory.steps import Executor

spec = parse_spec(json.loads(sys.argv[1]))
executor = Executor(spec)
executor.parent_run_id = executor.lineage.start_pipeline("toy", spec.to_yaml())
out = executor.run()
executor.lineage.end_pipeline(executor.parent_run_id)
compile_pipeline(spec, Path(sys.argv[2]))
runs = executor.lineage.client.search_runs([executor.lineage.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{executor.parent_run_id}'")
print(json.dumps({"manifests": out, "chain": [e["stage"] for e in chain(out["more"])], "runs": sorted(r.info.run_name for r in runs),
                  "code": executor.plan()["more"].recipe["code"]}))
"""


def test_a_toy_kind_is_one_package_and_one_registry_entry(tmp_path):
    (tmp_path / "a.txt").write_text("the cat and the hat")
    (tmp_path / "b.txt").write_text("a dog and the log")
    spec = {
        "name": "toy", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
        "steps": {
            "count": {"kind": "wordcount", "config": {"source": str(tmp_path / "a.txt"), "min_length": 3}},
            "more": {"kind": "wordcount", "config": {"source": str(tmp_path / "b.txt"), "min_length": 3}, "inputs": {"previous": "count"}},
        },
    }
    r = subprocess.run([sys.executable, "-c", TOY, json.dumps(spec), str(tmp_path / "toy.yaml")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    more = report["manifests"]["more"]
    assert more["kind"] == "counts" and more["stage_kind"] == "wordcount"
    assert more["metrics"] == {"words": 9.0, "distinct": 6.0}  # the, cat, and, the, hat + dog, and, the, log
    assert report["chain"] == ["more", "count"] and report["runs"] == ["count", "more"]
    folder = tmp_path / "store" / "more" / more["fingerprint"][:16]
    assert json.loads((folder / "counts.json").read_text()) == {"and": 2, "cat": 1, "dog": 1, "hat": 1, "log": 1, "the": 3}
    assert len(report["code"]) == 16  # a code version from the toy module's own import closure
    ir = next(yaml.safe_load_all((tmp_path / "toy.yaml").read_text()))
    tasks = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert tasks["more"]["inputs"]["artifacts"]["previous"]["taskOutputArtifact"]["producerTask"] == "count"
    assert "def wordcount(spec: str, step: str, plan: str, job_id: str, artifact: Output[Artifact], previous: Optional[Input[Artifact]] = None)" \
        in ir["deploymentSpec"]["executors"]["exec-more"]["container"]["command"][-1]


def test_every_hook_a_kind_names_exists():
    """A registry entry naming a hook its package lacks fails here, not when a spec first reaches it."""
    from factory.kinds import KINDS

    names = ("cost", "spec_defaults", "evaluated_files", "preflight", "architecture", "check_architecture")
    for kind_name, kind in KINDS.items():
        for name in names:
            if getattr(kind, name) is not None:
                assert callable(kind.hook(name)), (kind_name, name)
