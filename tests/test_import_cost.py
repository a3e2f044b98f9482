"""Loading a spec stays cheap: every KFP step loads it, and a reused step needs nothing more.

The stage configs are imported by `load_spec`, so a heavy import at the top of a stage module (torch,
transformers, ...) would be paid by every step. These tests check which modules get loaded, never time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top-level packages that loading a spec must not import (each costs from 0.1 s to 3 s).
HEAVY = ("torch", "transformers", "megatron", "mlflow", "kfp", "sklearn", "scipy", "matplotlib", "spacy", "lightgbm",
         "reasoning_gym", "math_verify", "httpx", "boto3")
# Of datatrove, only its Document class (`datatrove.data`, a few ms) may load: the curate configs' modules type
# their records with it; its pipeline steps, readers and executors (fsspec, ~0.2 s) may not.
DATATROVE_LIGHT = ("datatrove", "datatrove.data")

PROBE = """
import json, sys
from factory.spec import load_spec
spec = load_spec(sys.argv[1])
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
datatrove = sorted(name for name in sys.modules if name.split(".")[0] == "datatrove")
print(json.dumps({"enabled": spec.enabled(), "loaded": loaded, "datatrove": datatrove}))
"""


@pytest.mark.parametrize("name", ["smoke", "posttrain", "cluster"])
def test_load_spec_imports_no_heavy_module(name):
    # A fresh interpreter: this test process has imported torch already through other tests.
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "examples" / f"{name}.yaml"), json.dumps(HEAVY)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # the stages whose configs used to pull in torch are really loaded
    assert {"smoke": "pretrain", "posttrain": "sft", "cluster": "pretrain"}[name] in report["enabled"]
    assert report["loaded"] == [], (
        f"load_spec('examples/{name}.yaml') imported {', '.join(report['loaded'])}; "
        f"none of {', '.join(HEAVY)} may load at import time: move the import into the function that needs it"
    )
    assert set(report["datatrove"]) <= set(DATATROVE_LIGHT), report["datatrove"]


def test_lazy_names_resolve_to_their_modules():
    import factory.precision as precision
    import factory.train as train
    from factory.precision import convert, linear
    from factory.train import trainer

    # One PrecisionConfig class, whichever module it is imported from.
    assert convert.PrecisionConfig is precision.PrecisionConfig
    assert precision.convert_model is convert.convert_model and precision.NVFP4Linear is linear.NVFP4Linear
    assert train.Trainer is trainer.Trainer
    assert set(precision.__all__) >= {"PrecisionConfig", "convert_model", "fp8_quantize", "nvfp4_quantize"}
    for name in train.__all__:
        assert getattr(train, name) is not None
    for module in (precision, train):
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name  # noqa: B018
