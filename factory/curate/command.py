"""`factory curate INPUT... --out DIR [--spec SPEC]`: the curate stage alone, on files or folders.

It runs the pipeline's own stage code (`factory.curate.run`) with the spec's curate settings (or the
defaults) and the given inputs as `sources` (a spec whose curate scores quality with the `quality` stage
gets that ensemble from the spec's store, built there first if it is not published yet), and writes the
same layout the pipeline publishes, plus a `manifest.json` (fingerprint, config, raw-source digests,
producer, metrics, every file's size and sha256):

    from factory.curate.command import curate_files
    manifest = curate_files(["crawl/", "pages.jsonl"], Path("corpus"), spec_path=None)

`out` must be absent, empty, or a previous curate output (which is replaced); anything else is refused, so
a typo never overwrites a folder of other files. The output is built in a staging folder beside `out` and
renamed into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import factory
from factory.curate.pipeline import KIND, Config, run
from factory.errors import InputError, SpecError
from factory.logs import get_logger
from factory.lineage import lineage_entry
from factory.stage import Artifact, StepContext
from factory.store import MANIFEST, LocalStore, write_json_atomic

log = get_logger("factory.curate.command")


def _config(inputs: list[str], spec_path: Path | None) -> tuple[Config, dict[str, Artifact]]:
    """The spec's curate config (or the defaults) with `sources` set to `inputs`, made absolute, and the
    upstream artifacts it takes: the spec's quality ensemble, built (or reused) in the spec's store."""
    sources = [str(Path(p).expanduser().resolve()) for p in inputs]
    if spec_path is None:
        return Config(sources=sources), {}
    from factory.spec import Spec, load_spec
    from factory.steps import Executor

    spec = load_spec(spec_path).resolved(Path(spec_path).resolve().parent)
    if "curate" not in spec.enabled():
        raise SpecError(f"{spec_path}: stages.curate is absent; add it or run without --spec")
    data = spec.model_dump(mode="json")
    data["stages"]["curate"]["sources"] = sources
    spec = Spec.model_validate(data)
    config = spec.stage_config("curate")
    upstream: dict[str, Artifact] = {}
    if spec.inputs_of("curate"):
        executor = Executor(spec)
        for name, stage in spec.inputs_of("curate").items():
            manifest = executor.run([stage])[stage]
            upstream[name] = Artifact(executor.store.materialize(executor.plan()[stage].key), manifest)
    return config, upstream


def _check_out(out: Path) -> bool:
    """Whether `out` holds a previous curate output; raises InputError when it holds anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if not any(out.iterdir()):
        return False
    manifest = out / MANIFEST
    if manifest.is_file():
        import json

        try:
            previous = json.loads(manifest.read_text())
        except ValueError:
            previous = {}
        if previous.get("stage") == "curate" and previous.get("kind") == KIND:
            return True
    raise InputError(f"--out {out} is not empty and is not a previous curate output; give a new or empty folder")


def curate_files(inputs: list[str], out: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """Curate `inputs` (files or folders) into `out`; returns the manifest written to `out/manifest.json`."""
    from factory.steps import code_version, fingerprint_of, git_commit, source_digests

    if not inputs:
        raise InputError("give at least one input file or folder to curate")
    out = Path(out).expanduser().resolve()
    config, upstream = _config(inputs, spec_path)
    replace = _check_out(out)
    sources = source_digests("curate", config)  # raises InputError naming a missing input
    recipe = {"stage": "curate", "config": config.result_fields(), "inputs": {k: a.fingerprint for k, a in upstream.items()},
              "sources": sources, "code": code_version("curate")}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        metrics = run(config, upstream, staging, StepContext("curate", scratch=staging.parent / f"{staging.name}-scratch"))
        manifest = LocalStore.finalize_manifest(staging, {
            "format": 1,
            "kind": KIND,
            "stage": "curate",
            "fingerprint": fingerprint_of(recipe),
            "recipe": recipe,
            "config": config.model_dump(mode="json"),
            "inputs": {k: {"uri": a.uri, "fingerprint": a.fingerprint, "kind": a.manifest.get("kind"), "stage": a.manifest.get("stage")}
                       for k, a in upstream.items()},
            "sources": [e for entries in sources.values() for e in entries],
            "lineage": [lineage_entry(a.manifest) for a in upstream.values()],
            "producer": {
                "factory_version": factory.__version__,
                "git_commit": git_commit(),
                "mlflow_run_id": None,
                "tracking_uri": None,
                "created_at": datetime.now(timezone.utc).isoformat(),
            },
            "metrics": {k: float(v) for k, v in metrics.items()},
        }, uri=out.as_uri())
        write_json_atomic(staging / MANIFEST, manifest)
        if replace or out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(staging.parent / f"{staging.name}-scratch", ignore_errors=True)
    log.info("curate_files_done", out=str(out), docs_out=metrics.get("docs_out"), fingerprint=manifest["fingerprint"][:16])
    return manifest
