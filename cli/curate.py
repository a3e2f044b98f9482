"""`factory curate INPUT... --out DIR [--spec SPEC]`: the curate stage alone, on files or folders.

It runs the pipeline's own stage code (`factory.stages.curate`) with the spec's curate settings (or the
defaults) and the given inputs as `sources` (a spec whose curate scores quality with the `quality` stage
gets that ensemble from the spec's store, built there first if it is not published yet), and writes the
same layout the pipeline publishes, plus a `manifest.json` (fingerprint, config, raw-source digests,
producer, metrics, every file's size and sha256):

    from cli.curate import curate_files
    manifest = curate_files(["crawl/", "pages.jsonl"], Path("corpus"), spec_path=None)

`out` must be absent, empty, or a previous curate output (which is replaced); the output is built beside it and
renamed into place (`cli.standalone`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli.standalone import check_out, run_into
from factory.errors import InputError, SpecError
from factory.kinds import KINDS
from factory.logs import get_logger
from factory.spec import Spec, load_spec
from factory.stage import Artifact
from factory.steps import Executor

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


def curate_files(inputs: list[str], out: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """Curate `inputs` (files or folders) into `out`; returns the manifest written to `out/manifest.json`."""
    if not inputs:
        raise InputError("give at least one input file or folder to curate")
    out = Path(out).expanduser().resolve()
    config, upstream = _config(inputs, spec_path)
    replace = check_out(out, step="curate", kind=CURATE.output, command="factory curate")
    manifest = run_into(out, replace, step="curate", kind_name="curate", config=config, inputs=lambda scratch: upstream)
    metrics = manifest["metrics"]
    log.info("curate_files_done", out=str(out), docs_out=metrics.get("docs_out"), fingerprint=manifest["fingerprint"][:16])
    return manifest
