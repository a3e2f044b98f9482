"""`factory curate INPUT... --out DIR [--spec SPEC]`: the curate stage alone, on files or folders.

It runs the pipeline's own stage code (`factory.stages.curate`) with the spec's curate settings (or the
defaults) and the given inputs as `sources` (a spec whose curate scores quality with the `quality` stage
gets that ensemble from the spec's store, built there first if it is not published yet), and writes the
same layout the pipeline publishes, plus a `manifest.json` (fingerprint, config, raw-source digests,
producer, metrics, every file's size and sha256):

    from cli.curate import curate_files
    manifest = curate_files(["crawl/", "pages.jsonl"], Path("corpus"), spec_path=None)

`out` must be absent, empty, or a previous curate output (which is replaced); anything else is refused, so
a typo never overwrites a folder of other files. The output is built in a staging folder beside `out` and
renamed into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from factory.errors import InputError, SpecError
from factory.kinds import KINDS
from factory.logs import get_logger
from factory.manifest import build_manifest
from factory.sources import source_digests
from factory.spec import Spec, load_spec
from factory.stage import Artifact, StepContext
from factory.steps import Executor, code_version, fingerprint_of
from factory.store import MANIFEST, LocalStore, write_json_atomic

log = get_logger("cli.curate")
CURATE = KINDS["curate"]


def _config(inputs: list[str], spec_path: Path | None) -> tuple[Any, dict[str, Artifact]]:
    """The spec's curate config (or the defaults) with `sources` set to `inputs`, made absolute, and the
    upstream artifacts it takes: the spec's quality ensemble, built (or reused) in the spec's store."""
    sources = [str(Path(p).expanduser().resolve()) for p in inputs]
    if spec_path is None:
        return CURATE.config(sources=sources), {}

    spec = load_spec(spec_path).resolved(Path(spec_path).resolve().parent)
    steps = [n for n in spec.enabled() if spec.kind_of(n) == "curate"]
    if len(steps) != 1:
        raise SpecError(f"{spec_path}: needs exactly one curate step (it has {len(steps)}); fix the spec or run without --spec")
    (step,) = steps
    data = spec.model_dump(mode="json")
    if spec.stages is not None:
        data["stages"][step]["sources"] = sources
    else:
        data["steps"][step]["config"]["sources"] = sources
    spec = Spec.model_validate(data)
    config = spec.stage_config(step)
    upstream: dict[str, Artifact] = {}
    if spec.inputs_of(step):
        executor = Executor(spec)
        for name, up in spec.inputs_of(step).items():
            manifest = executor.run([up])[up]
            upstream[name] = Artifact(executor.store.materialize(executor.plan()[up].key), manifest)
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
        try:
            previous = json.loads(manifest.read_text())
        except ValueError:
            previous = {}
        if previous.get("stage") == "curate" and previous.get("kind") == CURATE.output:
            return True
    raise InputError(f"--out {out} is not empty and is not a previous curate output; give a new or empty folder")


def curate_files(inputs: list[str], out: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """Curate `inputs` (files or folders) into `out`; returns the manifest written to `out/manifest.json`."""
    if not inputs:
        raise InputError("give at least one input file or folder to curate")
    out = Path(out).expanduser().resolve()
    config, upstream = _config(inputs, spec_path)
    replace = _check_out(out)
    sources = source_digests("curate", config)  # raises InputError naming a missing input
    recipe = {"kind": "curate", "config": config.result_fields(), "inputs": {k: a.fingerprint for k, a in upstream.items()},
              "sources": sources, "code": code_version("curate")}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        metrics = CURATE.run(config, upstream, staging, StepContext("curate", scratch=staging.parent / f"{staging.name}-scratch"))
        manifest = build_manifest("curate", CURATE.output, "curate", fingerprint_of(recipe), recipe, config.model_dump(mode="json"),
                                  upstream, metrics)
        manifest = LocalStore.finalize_manifest(staging, manifest.model_dump(mode="json"), uri=out.as_uri())
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
