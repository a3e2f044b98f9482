"""Cost of rerunning an unchanged spec: `factory run` decides reuse in-process, against kfp.local reusing per step.

Runs the spec once (everything built), then again unchanged with `factory run` (every step published, so
the KFP local runner never starts: the reuse is recorded in MLflow and the command ends), then once more
through kfp.local as `factory run` did before (one subprocess per step, each finding its artifact published).
All three on the same store, in the same session; each is a fresh process, as a user would run it.

    .venv/bin/python bench/rerun.py                              # the smoke spec: a few minutes on 2 cores
    .venv/bin/python bench/rerun.py --spec my.yaml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

_KFP_RERUN = """
import sys
from pathlib import Path
from factory.spec import load_spec
from factory.local_run import run_pipeline_locally
spec = load_spec(sys.argv[1]).resolved()
result = run_pipeline_locally(spec, Path(spec.work_dir))
sys.exit(1 if result.failure else 0)
"""


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "smoke.yaml", help="spec to run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        data = yaml.safe_load(args.spec.read_text())
        # a fresh work folder and store, so the first run builds everything
        data["work_dir"] = str(Path(tmp) / "work")
        data["storage"] = {**data.get("storage", {}), "root": str(Path(tmp) / "store")}
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(yaml.safe_dump(data))
        factory = [sys.executable, "-m", "factory.cli", "run", str(spec)]
        first = _timed(factory)
        rerun = _timed(factory)
        kfp_rerun = _timed([sys.executable, "-c", _KFP_RERUN, str(spec)])
    rows = [("first run (builds every step)", first), ("rerun, factory run (reuse decided in-process)", rerun),
            ("rerun through kfp.local (one subprocess per step)", kfp_rerun)]
    for name, seconds in rows:
        print(f"{name:<52} {seconds:8.1f} s  {100 * seconds / first:6.1f}% of the first run")
    print(json.dumps({"first_s": round(first, 1), "rerun_s": round(rerun, 1), "kfp_rerun_s": round(kfp_rerun, 1),
                      "rerun_fraction": round(rerun / first, 4)}))


if __name__ == "__main__":
    main()
