"""`plan_steps(spec, kinds)`: what every step of a spec will cost before it runs, from the spec alone
(`factory.plan.plan_spec` passes the registered kinds: the registry sits above this package).

    report = plan_steps(load_spec("examples/cluster.yaml"), KINDS, mfu=0.4, price_per_gpu_hour=2.5)
    print(report.table())

Each step is costed by its kind's `cost` hook (`factory.kinds`), `cost(step, plan) -> StepCost`, which gets the
step (name, config, inputs) and a `PlanContext`: the spec, the steps planned before it (so a post-training step
finds the model it trains, and tokenize the text it reads), the step's devices and parallel layout, the MFU, the
price and the serving context. Trainer kinds share one estimator (`factory.cost.workload.trainer_cost`).

Per step: data size (documents, bytes, tokens), FLOPs, time and GPU-hours at a stated MFU, money at a stated
price per GPU-hour, memory per device against the step's device, a verdict, fits or not, naming the largest
memory term, and the basis of its figures: the spec alone, or an estimate (the note says which rule), with the
counts a published build of the step has measured in its place (`PublishedBuilds`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from factory.cost.flops import flops_per_token
from factory.cost.layout import ParallelLayout, default_layout
from factory.cost.memory import GIB
from factory.cost.shape import DEFAULT_VOCAB, DENSE_DECODERS
from factory.errors import SpecError


class Gpu(NamedTuple):
    """An accelerator's memory and dense peak FLOP/s per number format (vendor datasheets, SXM parts)."""

    memory_gib: float
    peak: dict[str, float]


# Dense (no sparsity) tensor-core peaks. fp32 training runs TF32 tensor cores; nvfp4 falls back to fp8 where
# the part has no FP4 units.
GPUS: dict[str, Gpu] = {
    "H100": Gpu(80, {"fp32": 494e12, "bf16": 989e12, "fp8": 1979e12, "nvfp4": 1979e12}),
    "H200": Gpu(141, {"fp32": 494e12, "bf16": 989e12, "fp8": 1979e12, "nvfp4": 1979e12}),
    "B200": Gpu(180, {"fp32": 1100e12, "bf16": 2250e12, "fp8": 4500e12, "nvfp4": 9000e12}),
    "GB200": Gpu(186, {"fp32": 1250e12, "bf16": 2500e12, "fp8": 5000e12, "nvfp4": 10000e12}),
    "A100": Gpu(80, {"fp32": 156e12, "bf16": 312e12, "fp8": 312e12, "nvfp4": 312e12}),
    "A10G": Gpu(22, {"fp32": 35e12, "bf16": 70e12, "fp8": 70e12, "nvfp4": 70e12}),  # 24 GB, 22 GiB usable (Nano 2)
    "L40S": Gpu(48, {"fp32": 183e12, "bf16": 362e12, "fp8": 733e12, "nvfp4": 733e12}),
}
DEFAULT_GPU = "H100"


class NotCosted(Exception):
    """A step's cost hook cannot estimate it (e.g. its input model's shape is unknown); the plan notes why."""


@dataclass(frozen=True)
class PlannedModel:
    """The model a checkpoint step makes, as far as the plan can tell: its shape (a `ModelSpec`, `ModelConfig` or
    `Shape`) and the vocabulary of the tokenizer it was trained with."""

    config: Any
    vocab_size: int


@dataclass(frozen=True)
class StepCost:
    """One step's plan. Memory figures are bytes per device; `budget` is None when the spec states none.

    `estimated`: some figure rests on a stated rule of thumb (the note names it), not on the spec alone.
    `measured`: the data keys read from a published build instead of estimated. `model` is the checkpoint the
    step makes (None for other artifacts) and `vocab_size` the vocabulary of the tokens it makes: what later
    steps read through `PlanContext.model_of` and `vocab_of`.
    """

    step: str
    device: str
    gpus: int
    data: dict[str, float] = field(default_factory=dict)
    flops: float | None = None
    hours: float | None = None
    gpu_hours: float | None = None
    cost: float | None = None
    memory: dict[str, int] = field(default_factory=dict)
    memory_total: int = 0
    budget: int | None = None
    note: str = ""
    estimated: bool = False
    measured: tuple[str, ...] = ()
    vocab_size: int | None = None
    model: PlannedModel | None = field(default=None, compare=False, repr=False)

    @property
    def fits(self) -> bool:
        return self.budget is None or self.memory_total <= self.budget

    @property
    def largest(self) -> str:
        return max(self.memory, key=self.memory.__getitem__) if self.memory else "-"

    @property
    def basis(self) -> str:
        """How the figures were reached: "spec" (computed from the spec alone) or "estimate", and what was measured."""
        text = "estimate" if self.estimated else "spec"
        return text + (f"; measured {', '.join(self.measured)}" if self.measured else "")

    def verdict(self) -> str:
        if not self.memory:
            return "-"
        if self.budget is None:
            return f"no limit stated (largest: {self.largest})"
        return f"{'fits' if self.fits else 'DOES NOT FIT'} (largest: {self.largest})"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        return {**out, "measured": list(self.measured), "basis": self.basis, "fits": self.fits, "largest": self.largest,
                "verdict": self.verdict()}


@dataclass(frozen=True)
class PlanReport:
    """The plan of a whole spec, and the assumptions it was made under."""

    spec: str
    mfu: float
    price_per_gpu_hour: float
    context: int | None
    steps: list[StepCost]

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "mfu": self.mfu, "price_per_gpu_hour": self.price_per_gpu_hour, "context": self.context,
            "fits": self.fits, "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        rows = [("step", "device", "data", "FLOPs", "time", "GPU-h", "cost", "memory/device", "verdict", "basis")]
        for s in self.steps:
            data = ", ".join(f"{k} {_si(v)}" for k, v in s.data.items()) or "-"
            memory = f"{s.memory_total / GIB:.2f} GiB" + (f" of {s.budget / GIB:.0f}" if s.budget else "") if s.memory else "-"
            rows.append((
                s.step, f"{s.gpus}x {s.device}" if s.gpus else s.device, data,
                _si(s.flops) if s.flops else "-", _duration(s.hours), f"{s.gpu_hours:,.1f}" if s.gpu_hours is not None else "-",
                f"${s.cost:,.0f}" if s.cost is not None else "-", memory, s.verdict(), s.basis,
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"at MFU {self.mfu:.0%} of the dense peak of each step's precision, ${self.price_per_gpu_hour}/GPU-hour; "
                     "basis: spec = from the spec alone, estimate = a stated rule (see the step's note), "
                     "measured = counted by a published build")
        notes = [f"{s.step}: {s.note}" for s in self.steps if s.note]
        return "\n".join(lines + notes)

    def summary_line(self) -> str:
        parts = []
        for s in self.steps:
            if not s.memory:
                continue
            bits = [s.step]
            if s.flops:
                bits.append(f"{_si(s.flops)} FLOPs")
            if s.gpu_hours is not None:
                bits.append(f"{s.gpu_hours:,.1f} GPU-h (${s.cost:,.0f})")
            bits.append(f"{s.memory_total / GIB:.2f} GiB/{'GPU' if s.gpus else 'host'} {s.verdict()}")
            parts.append(" ".join(bits))
        return "plan: " + ("; ".join(parts) if parts else "nothing to cost")


def _si(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _duration(hours: float | None) -> str:
    if hours is None:
        return "-"
    if hours >= 48:
        return f"{hours / 24:,.1f} d"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 3600:.0f} s"


def parse_memory(text: str | None, where: str) -> int | None:
    """Kubernetes quantity ('8G', '16Gi', '512M') in bytes; None when unset."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*", text)
    if not m:
        raise SpecError(f"{where}: {text!r} is not a memory quantity such as '16G' or '16Gi'")
    scale = {None: 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(float(m.group(1)) * scale[m.group(2)])


def gpu_of(resources) -> str:
    """The GPU model a step's resources name (gpu_type or a node-selector value), else the default."""
    text = " ".join([resources.gpu_type or "", *resources.node_selector.values()]).upper()
    for name in sorted(GPUS, key=len, reverse=True):
        if name in text:
            return name
    return DEFAULT_GPU


def layout_of(spec, step: str) -> ParallelLayout:
    """The step's parallel layout: `resources.STEP.parallel`, else data parallel over nodes x GPUs."""
    res = spec.resources_for(step)
    layout = getattr(res, "parallel", None)
    if layout is None:
        return default_layout(res.nodes, res.gpus)
    devices = res.nodes * max(res.gpus, 1)
    if layout.gpus != devices:
        raise SpecError(
            f"resources.{step}.parallel: data x tensor x pipeline x context = {layout.gpus}, "
            f"but nodes x gpus = {devices}; make them equal"
        )
    return layout


class Device(NamedTuple):
    """Where a step runs: a GPU model (or "cpu"), how many GPUs in all, and the memory budget of one device."""

    name: str
    gpus: int
    budget: int | None


class PublishedBuilds:
    """Counts that published builds of a spec's steps have measured (their manifests' metrics), read from the
    spec's store when it is a local folder (an object store is not read: planning stays offline).

    A build counts for a step when its recipe has the step's kind and result fields, and its inputs are the builds
    that count for the step's upstream steps: the same config on the same data. Code and raw-input versions are not
    compared (they would need every kind's import closure and a listing of every source), so a measurement may
    come from the step's code of an earlier commit; the plan names it measured, never exact.
    """

    def __init__(self, spec: Any, root: str | Path | None = None):
        self.steps = spec.step_defs()
        root = spec.storage.root if root is None else root
        self.root = None if "://" in str(root) else Path(root).expanduser()
        self._found: dict[str, dict[str, Any] | None] = {}

    def manifest(self, name: str) -> dict[str, Any] | None:
        """The newest complete manifest that counts for step `name`, or None."""
        if name not in self._found:
            self._found[name] = self._find(name)
        return self._found[name]

    def metrics(self, name: str) -> dict[str, float]:
        found = self.manifest(name)
        return dict(found.get("metrics") or {}) if found else {}

    def _find(self, name: str) -> dict[str, Any] | None:
        folder = self.root / name if self.root is not None else None
        if folder is None or not folder.is_dir():
            return None
        step = self.steps[name]
        want = {"kind": step.kind, "config": json.loads(json.dumps(step.config.result_fields()))}
        inputs = {}
        for input_name, up in step.inputs.items():
            upstream = self.manifest(up)
            if upstream is None:
                return None
            inputs[input_name] = upstream["fingerprint"]
        found = []
        for path in folder.glob("*/manifest.json"):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            recipe = manifest.get("recipe") or {}
            if ({k: recipe.get(k) for k in want} == want and recipe.get("inputs") == inputs
                    and _complete(path.parent, manifest)):
                found.append(manifest)
        return max(found, key=lambda m: (m.get("producer") or {}).get("created_at", ""), default=None)


def _complete(folder: Path, manifest: Mapping[str, Any]) -> bool:
    """Every file the manifest lists is there with its size (as `Store.complete` checks)."""
    for entry in manifest.get("files", []):
        f = folder / entry["path"]
        if not f.is_file() or f.stat().st_size != entry["size"]:
            return False
    return True


@dataclass
class PlanContext:
    """What a kind's cost hook reads besides its own step: the spec, the steps planned before it (by name, in
    dependency order), the assumptions of the plan (MFU, price, serving context), and the measured counts of
    published builds."""

    spec: Any
    kinds: Mapping[str, Any]  # the stage kinds by name (`factory.kinds.KINDS`): their `cost` hooks and flags
    mfu: float = 0.4
    price_per_gpu_hour: float = 2.5
    context: int | None = None
    costs: dict[str, StepCost] = field(default_factory=dict)
    published: PublishedBuilds | None = None

    def device(self, name: str) -> Device:
        res = self.spec.resources_for(name)
        if res.gpus > 0:
            gpu = gpu_of(res)
            return Device(gpu, res.gpus * res.nodes, int(GPUS[gpu].memory_gib * GIB))
        return Device("cpu", 0, parse_memory(res.memory, f"resources.{name}.memory"))

    def layout(self, step: Any) -> ParallelLayout:
        """The layout the step trains with: its resources' layout for a kind that runs distributed, else one
        process (`factory.kinds`: such a kind runs on one device, whatever its resources reserve)."""
        if not self.kinds[step.kind].distributed:
            return ParallelLayout()
        return layout_of(self.spec, step.name)

    def upstream(self, step: Any, input_name: str) -> StepCost | None:
        """The plan of the step wired to `input_name`, or None when the input is not wired."""
        up = step.inputs.get(input_name)
        return self.costs.get(up) if up else None

    def model_of(self, step: Any, input_name: str = "model") -> PlannedModel:
        """The model of the checkpoint wired to `input_name`; the spec's top-level model when the input is not wired
        to a planned step. Raises `NotCosted` when it is wired to a step that plans no model shape (an imported
        architecture `factory.cost` has no formulas for): costing the spec's own model there would be wrong."""
        up = self.upstream(step, input_name)
        if up is None:
            return PlannedModel(self.spec.model, DEFAULT_VOCAB)
        if up.model is None:
            raise NotCosted(f"step {up.step} plans no model shape (factory.cost reads NemotronH and "
                            f"{', '.join(sorted(DENSE_DECODERS))} shapes)")
        return up.model

    def vocab_of(self, step: Any, input_name: str = "tokens") -> int:
        """The vocabulary of the tokens wired to `input_name` (the published checkpoints' when unknown)."""
        up = self.upstream(step, input_name)
        return up.vocab_size if up is not None and up.vocab_size else DEFAULT_VOCAB

    def measured(self, name: str) -> dict[str, float]:
        """The metrics a published build of step `name` measured (`PublishedBuilds`); {} when none counts."""
        return self.published.metrics(name) if self.published is not None else {}

    def timed(self, name: str, flops: float, precision: str = "bf16", devices: int | None = None) -> dict[str, float]:
        """Hours, GPU-hours and money for `flops` on step `name`'s GPUs at the plan's MFU of `precision`'s dense peak,
        spread over `devices` of them (default: all it reserves); {} on a CPU step (no stated CPU throughput)."""
        device = self.device(name)
        if not device.gpus or not flops:
            return {}
        hours = flops / ((devices or device.gpus) * GPUS[device.name].peak[precision] * self.mfu) / 3600
        return {"hours": hours, "gpu_hours": hours * device.gpus, "cost": hours * device.gpus * self.price_per_gpu_hour}

    def cost(self, step: Any, **fields: Any) -> StepCost:
        """A `StepCost` of `step` on its devices, with its memory budget; `fields` as `StepCost`'s."""
        device = self.device(step.name)
        return StepCost(step.name, device.name, device.gpus, budget=device.budget, **fields)


def plan_steps(spec, kinds: Mapping[str, Any], *, mfu: float = 0.4, price_per_gpu_hour: float = 2.5,
               context: int | None = None) -> PlanReport:
    """Plan every enabled step of `spec` (a `factory.spec.Spec`), each through its kind's `cost` hook in `kinds`
    (kind name -> a `factory.kinds.StageKind`, or anything with its `hook(name)` and `distributed`)."""
    if not 0 < mfu <= 1:
        raise SpecError(f"--mfu: {mfu} must be in (0, 1]")
    if price_per_gpu_hour < 0:
        raise SpecError(f"--price: {price_per_gpu_hour} must not be negative")
    plan = PlanContext(spec, kinds, mfu, price_per_gpu_hour, context, published=PublishedBuilds(spec))
    for step in spec.step_defs().values():  # dependency order: a step's inputs are planned before it
        hook = kinds[step.kind].hook("cost")
        try:
            plan.costs[step.name] = hook(step, plan) if hook else plan.cost(step, note=f"kind {step.kind} has no cost hook")
        except NotCosted as e:
            plan.costs[step.name] = plan.cost(step, note=f"not costed: {e}")
    return PlanReport(spec.name, mfu, price_per_gpu_hour, context, list(plan.costs.values()))


@dataclass(frozen=True)
class Budget:
    """A whole training run: model FLOPs, and the GPU time they take at a stated utilisation."""

    tokens: float
    flops: float
    tflops_per_gpu: float  # achieved: peak x MFU
    gpu_days: float

    def days_on(self, gpus: int) -> float:
        return self.gpu_days / gpus


def training_budget(model: Any, tokens: float, seq_len: int, *, gpu: str = DEFAULT_GPU, precision: str = "fp8",
                    mfu: float = 0.4, vocab_size: int | None = None) -> Budget:
    """FLOPs x tokens of a pretraining run of `model`, and its GPU-days on `gpu` at `mfu` of the precision's peak."""
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; known: {sorted(GPUS)}")
    flops = flops_per_token(model, seq_len, vocab_size=vocab_size).training * tokens
    achieved = GPUS[gpu].peak[precision] * mfu
    return Budget(tokens, flops, achieved / 1e12, flops / achieved / 86400)
