"""One stage kind run outside a spec into a folder the user names (`factory curate`, `factory eval`).

    replace = check_out(out, step="eval", kind="evaluation", command="factory eval")
    manifest = run_into(out, replace, step="eval", kind_name="evaluate", config=config, inputs=lambda scratch: {...})

`out` must be absent, empty or that command's own previous output (its manifest names the step and the artifact
kind), which is replaced; anything else is refused, so a typo never overwrites a folder of other files. The output
is built in a staging folder beside `out` and renamed into place, so an interrupted run leaves nothing half-written.
The manifest is the executor's (fingerprint over the config, the inputs, the raw inputs, the code and library
versions), so `factory lineage` reads it like any published artifact.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.code_version import library_versions
from factory.errors import InputError
from factory.kinds import KINDS
from factory.manifest import build_manifest
from factory.sources import source_digests
from factory.stage import Artifact, StepContext
from factory.steps import code_version, fingerprint_of
from factory.store import MANIFEST, LocalStore, write_json_atomic


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest.json in `folder`, or {} when there is none (a folder the factory did not publish)."""
    try:
        loaded = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def check_out(out: Path, *, step: str, kind: str, command: str) -> bool:
    """Whether `out` holds `command`'s previous output (to replace); raises InputError when it holds anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if not any(out.iterdir()):
        return False
    previous = read_manifest(out)
    if previous.get("stage") == step and previous.get("kind") == kind:
        return True
    raise InputError(f"--out {out} is not empty and is not a previous `{command}` output; give a new or empty folder")


def run_into(out: Path, replace: bool, *, step: str, kind_name: str, config: Any,
             inputs: Callable[[Path], dict[str, Artifact]]) -> dict[str, Any]:
    """Run kind `kind_name` with `config` on `inputs(scratch)` into `out` as step `step`; returns the manifest."""
    kind = KINDS[kind_name]
    sources = source_digests(kind_name, config)  # a missing raw input: one line naming it, before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging, scratch = out.parent / f".{out.name}.staging-{tag}", out.parent / f".{out.name}.scratch-{tag}"
    staging.mkdir()
    scratch.mkdir()
    try:
        upstream = inputs(scratch)
        recipe = {"kind": kind_name, "config": config.result_fields(), "sources": sources,
                  "inputs": {k: a.fingerprint for k, a in upstream.items()}, "code": code_version(kind_name),
                  "libraries": library_versions(kind.run_module)}
        metrics = kind.run(config, upstream, staging, StepContext(step, scratch=scratch))
        manifest = build_manifest(step, kind.output, kind_name, fingerprint_of(recipe), recipe,
                                  config.model_dump(mode="json"), upstream, metrics)
        manifest = LocalStore.finalize_manifest(staging, manifest.model_dump(mode="json"), uri=out.as_uri())
        write_json_atomic(staging / MANIFEST, manifest)
        if replace or out.exists():
            old = out.parent / f".{out.name}.old-{tag}"
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest
