"""The stage contract: what every stage module exports and what it receives.

A stage module exports:

    class Config(StageConfig): ...            # frozen pydantic model, one description per field
    def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]

and has one entry in `factory.kinds.KINDS`, which names its inputs, its output artifact kind ("corpus",
"checkpoint", ...) and how it runs (resumable, distributed, launcher, registered).

`inputs` are the upstream artifacts, already materialised as local folders; `output` is an empty (or,
for resumable stages, partially filled) staging folder the stage writes into; the returned dict is the
stage's summary metrics. `ctx` carries the runtime handles (metric logging, plots, datasets); it is an
argument, never a config field (STYLE rule 5). A stage imports no kfp and no kubernetes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.logs import get_logger
from factory.sources import normalised_uri


class StageConfig(BaseModel):
    """Base of every stage's config: frozen, strict about unknown fields.

    Defaults are validated too, so a default written `10` in a float field is `10.0` from the start and
    the config dumps the same before and after a JSON round trip (which keeps fingerprints stable).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # Not in the fingerprint as a config value: it changes how raw inputs are identified (factory.sources).
    content_hash: list[str] | None = Field(
        None, json_schema_extra={"affects_result": False},
        description="Raw inputs (as written in this config's input fields) identified by a sha256 of every byte "
                    "instead of their listing (relative path, size, ETag or mtime); for files rewritten in place.")

    @model_validator(mode="after")
    def _content_hash_names_raw_inputs(self) -> StageConfig:
        """`content_hash` is honoured or refused: each entry must be one of the raw inputs this config names."""
        if not self.content_hash:
            return self
        named = {normalised_uri(str(v)) for name in self.external_fields() for v in _values(self._value_or_none(name))}
        stray = [p for p in self.content_hash if normalised_uri(p) not in named]
        if stray:
            raise ValueError(f"content_hash: {stray} {'is' if len(stray) == 1 else 'are'} not a raw input of this step "
                             f"({', '.join(sorted(named)) or 'it reads none'}); list inputs as written in its fields")
        return self

    def _value_or_none(self, path: str) -> Any:
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part, None)
        return value

    def result_fields(self) -> dict[str, Any]:
        """The fields that can change the stage's result, as JSON-able values.

        A field declared with `Field(..., json_schema_extra={"affects_result": False})` (log interval,
        progress display, worker count when the output does not depend on it) is left out, so changing
        it does not change the step's fingerprint.
        """
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if extra.get("affects_result", True) is False:
                continue
            value = getattr(self, name)
            out[name] = value.result_fields() if isinstance(value, StageConfig) else _jsonable(value)
        return out

    def required_inputs(self) -> set[str]:
        """Optional inputs (`In.optional` in `factory.kinds`) this config needs after all, e.g. curate's quality
        ensemble when quality scoring is on and no ensemble folder is given. The spec checks them."""
        return set()

    def check_wiring(self, inputs: Mapping[str, str]) -> None:
        """Raise `ValueError` when the steps wired to this step's inputs (input name -> step name) do not
        fit this config, e.g. a gate relative to a step that is not this step's baseline. The spec calls it
        with the wiring and prefixes the step's path."""

    @classmethod
    def external_fields(cls) -> list[str]:
        """Fields naming raw input files or folders (`json_schema_extra={"external_input": True}`), as
        dotted paths into nested configs ("generator.model_dir"): the executor digests their contents into
        the fingerprint, and `Spec.resolved` makes them absolute."""
        out = []
        for name, info in cls.model_fields.items():
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("external_input"):
                out.append(name)
            elif isinstance(info.annotation, type) and issubclass(info.annotation, StageConfig):
                out += [f"{name}.{sub}" for sub in info.annotation.external_fields()]
        return out

    def field_value(self, path: str) -> Any:
        """The value at a dotted field path of this config."""
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part)
        return value


def _values(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def no_effect(default: Any, description: str) -> Any:
    """A config field whose value cannot change the result (excluded from the fingerprint)."""
    return Field(default, description=description, json_schema_extra={"affects_result": False})


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Artifact:
    """An upstream artifact as a stage sees it: a local folder and its manifest (see `factory.store`)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def uri(self) -> str:
        return self.manifest.get("uri", str(self.path))


class Tracker(Protocol):
    """What a stage may log while it runs; `factory.lineage` implements it on MLflow."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dataset(self, name: str, uri: str, digest: str, context: str, profile: Mapping[str, Any] | None = None) -> None: ...


class NullTracker:
    """A tracker that records in memory; used when a stage runs outside the executor (tests, notebooks)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.artifacts: list[Path] = []
        self.datasets: list[dict[str, Any]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(Path(path))

    def log_dataset(self, name: str, uri: str, digest: str, context: str, profile: Mapping[str, Any] | None = None) -> None:
        self.datasets.append({"name": name, "uri": uri, "digest": digest, "context": context, "profile": dict(profile or {})})


@dataclass
class StepContext:
    """Runtime handles for one step: a tracker, a logger bound to the step, a scratch folder, the spec's S3
    endpoint and region (`storage.endpoint_url`, `storage.region`) for the `s3://` inputs a stage reads, the same
    ones planning listed them with (None: boto3's own configuration), and the trainer callbacks a caller adds to a
    training stage (`factory.train.shell` runs them after the stage's own, before the export)."""

    name: str
    tracker: Tracker = field(default_factory=NullTracker)
    scratch: Path | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    callbacks: list[Any] = field(default_factory=list)  # trainer callbacks a caller adds to a training stage's run

    def __post_init__(self) -> None:
        self.log = get_logger("factory.stage", step=self.name)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.tracker.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.tracker.log_artifact(path, artifact_path)

    def log_dataset(self, name: str, uri: str, digest: str, context: str, profile: Mapping[str, Any] | None = None) -> None:
        self.tracker.log_dataset(name, uri, digest, context, profile)
