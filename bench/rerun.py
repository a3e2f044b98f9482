"""Cost of reruns: `factory run` decides reuse in-process, against kfp.local reusing per step.

Runs the spec once (everything built), then again unchanged with `factory run` (every step published, so
the KFP local runner never starts: the reuse is recorded in MLflow and the command ends), then once more
through kfp.local as `factory run` did before (one subprocess per step, each finding its artifact published).
Then the partial rerun: evaluate's config changed (`max_new_tokens` + 1), so evaluate and what follows it
must run. `factory run` records the published steps as reused in-process and starts kfp.local for the
missing steps only; against it, the whole pipeline through kfp.local (every step a subprocess, the
published ones reusing their artifact) with evaluate changed once more (`+ 2`), so it has the same work.
All on the same input, in the same session; each is a fresh process, as a user would run it.

    .venv/bin/python bench/rerun.py                              # the smoke spec: several minutes on 2 cores
    .venv/bin/python bench/rerun.py --spec my.yaml --keep runs/bench-rerun   # keep the work folders
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
from cli.local_run import run_pipeline_locally
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


def _spec_in(folder: Path, data: dict) -> Path:
    """`data` with its work folder and store in `folder`, written there as spec.yaml."""
    data = {**data, "work_dir": str(folder / "work"), "storage": {**data.get("storage", {}), "root": str(folder / "store")}}
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    return spec


def _with_new_evaluate(data: dict, more_tokens: int) -> dict:
    """`data` with evaluate's config changed (`more_tokens` more generated tokens), the rest as it was."""
    stages = dict(data["stages"])
    if "evaluate" not in stages:
        sys.exit("the spec has no evaluate step to change for the partial rerun")
    evaluate = dict(stages["evaluate"] or {})
    evaluate["max_new_tokens"] = int(evaluate.get("max_new_tokens", 32)) + more_tokens
    return {**data, "stages": {**stages, "evaluate": evaluate}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "smoke.yaml", help="spec to run")
    parser.add_argument("--keep", type=Path, default=None, help="work in this (new) folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        base = args.keep or Path(tmp)
        data = yaml.safe_load(args.spec.read_text())
        # a fresh work folder and store, so the first run builds everything
        spec = _spec_in(base, data)
        factory = [sys.executable, "-m", "cli", "run"]
        first = _timed([*factory, str(spec)])
        rerun = _timed([*factory, str(spec)])
        kfp_rerun = _timed([sys.executable, "-c", _KFP_RERUN, str(spec)])
        partial = _timed([*factory, str(_spec_in(base, _with_new_evaluate(data, 1)))])
        kfp_partial = _timed([sys.executable, "-c", _KFP_RERUN, str(_spec_in(base, _with_new_evaluate(data, 2)))])
    rows = [("first run (builds every step)", first),
            ("rerun, factory run (reuse decided in-process)", rerun),
            ("rerun through kfp.local (one subprocess per step)", kfp_rerun),
            ("partial rerun (evaluate changed), factory run", partial),
            ("partial rerun through kfp.local (every step)", kfp_partial)]
    for name, seconds in rows:
        print(f"{name:<52} {seconds:8.1f} s  {100 * seconds / first:6.1f}% of the first run")
    print(json.dumps({"first_s": round(first, 1), "rerun_s": round(rerun, 1), "kfp_rerun_s": round(kfp_rerun, 1),
                      "partial_s": round(partial, 1), "kfp_partial_s": round(kfp_partial, 1),
                      "rerun_fraction": round(rerun / first, 4)}))


if __name__ == "__main__":
    main()
