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
SMOKE = ROOT / "examples" / "smoke.yaml"

# Top-level packages that loading a spec must not import (each costs from 0.1 s to 2 s).
HEAVY = ("torch", "transformers", "megatron", "mlflow", "kfp", "sklearn")

PROBE = """
import json, sys
from factory.spec import load_spec
spec = load_spec(sys.argv[1])
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"enabled": spec.enabled(), "loaded": loaded}))
"""


def test_load_spec_imports_no_heavy_module():
    # A fresh interpreter: this test process has imported torch already through other tests.
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(SMOKE), json.dumps(HEAVY)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "pretrain" in report["enabled"]  # the stage whose Config used to pull in torch is really loaded
    assert report["loaded"] == [], (
        f"load_spec('examples/smoke.yaml') imported {', '.join(report['loaded'])}; "
        f"none of {', '.join(HEAVY)} may load at import time: move the import into the function that needs it"
    )


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
