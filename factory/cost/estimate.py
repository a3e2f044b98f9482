"""`plan_spec(spec)`: what every step of a spec will cost before it runs, from the spec alone.

    report = plan_spec(load_spec("examples/cluster.yaml"), mfu=0.4, price_per_gpu_hour=2.5)
    print(report.table())

Per step: data size (documents, bytes, tokens), FLOPs, time and GPU-hours at a stated MFU, money at a stated
price per GPU-hour, memory per GPU against the step's device (training for pretrain, serving for evaluate
and release), and a verdict, fits or not, naming the largest memory term.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from factory.cost.flops import flops_per_token
from factory.cost.layout import ParallelLayout, default_layout
from factory.cost.memory import GIB, serving_memory, training_memory
from factory.cost.params import parameter_counts
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
DEFAULT_VOCAB = 131072
BYTES_PER_TOKEN = 4.0  # raw text bytes per BPE token, for English web text (a rough, stated rule)


@dataclass(frozen=True)
class StepCost:
    """One step's plan. Memory figures are bytes per device; `budget` is None when the spec states none."""

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

    @property
    def fits(self) -> bool:
        return self.budget is None or self.memory_total <= self.budget

    @property
    def largest(self) -> str:
        return max(self.memory, key=self.memory.__getitem__) if self.memory else "-"

    def verdict(self) -> str:
        if not self.memory:
            return "-"
        if self.budget is None:
            return f"no limit stated (largest: {self.largest})"
        return f"{'fits' if self.fits else 'DOES NOT FIT'} (largest: {self.largest})"


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
            "fits": self.fits,
            "steps": [{**asdict(s), "fits": s.fits, "largest": s.largest, "verdict": s.verdict()} for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        rows = [("step", "device", "data", "FLOPs", "time", "GPU-h", "cost", "memory/device", "verdict")]
        for s in self.steps:
            data = ", ".join(f"{k} {_si(v)}" for k, v in s.data.items()) or "-"
            memory = f"{s.memory_total / GIB:.2f} GiB" + (f" of {s.budget / GIB:.0f}" if s.budget else "") if s.memory else "-"
            rows.append((
                s.step, f"{s.gpus}x {s.device}" if s.gpus else s.device, data,
                _si(s.flops) if s.flops else "-", _duration(s.hours), f"{s.gpu_hours:,.1f}" if s.gpu_hours is not None else "-",
                f"${s.cost:,.0f}" if s.cost is not None else "-", memory, s.verdict(),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"at MFU {self.mfu:.0%} of the dense peak of each step's precision, ${self.price_per_gpu_hour}/GPU-hour")
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


def _budget(spec, step: str) -> tuple[str, int, int | None]:
    res = spec.resources_for(step)
    if res.gpus > 0:
        gpu = gpu_of(res)
        return gpu, res.gpus * res.nodes, int(GPUS[gpu].memory_gib * GIB)
    return "cpu", 0, parse_memory(res.memory, f"resources.{step}.memory")


def _source_bytes(sources: list[str]) -> tuple[int, int]:
    files = total = 0
    for src in sources:
        p = Path(src)
        for f in [p] if p.is_file() else (p.rglob("*") if p.is_dir() else []):
            if f.is_file():
                files += 1
                total += f.stat().st_size
    return files, total


def plan_spec(spec, *, mfu: float = 0.4, price_per_gpu_hour: float = 2.5, context: int | None = None) -> PlanReport:
    """Plan every enabled step of `spec` (a `factory.spec.Spec`)."""
    if not 0 < mfu <= 1:
        raise SpecError(f"--mfu: {mfu} must be in (0, 1]")
    if price_per_gpu_hour < 0:
        raise SpecError(f"--price: {price_per_gpu_hour} must not be negative")
    steps_by_kind = list(spec.step_defs().values())

    def first(kind: str):
        return next((st.config for st in steps_by_kind if st.kind == kind), None)

    tok_cfg, pre_cfg = first("tokenize"), first("pretrain")
    vocab = tok_cfg.vocab_size if tok_cfg is not None else DEFAULT_VOCAB
    model = pre_cfg.model if pre_cfg is not None else spec.model
    steps: list[StepCost] = []
    input_bytes = 0
    for st in steps_by_kind:  # named steps: costed by their kind, reported by their name
        name, kind, cfg = st.name, st.kind, st.config
        device, gpus, budget = _budget(spec, name)
        if kind == "curate":
            files, input_bytes = _source_bytes(list(cfg.sources))
            steps.append(StepCost(name, device, gpus, data={"files": files, "bytes": input_bytes},
                                  note="" if files else "sources not readable here: size unknown"))
        elif kind == "tokenize":
            est = input_bytes / BYTES_PER_TOKEN
            steps.append(StepCost(name, device, gpus, data={"tokens_estimate": est} if est else {},
                                  note=f"tokens ~ raw bytes / {BYTES_PER_TOKEN:g} (upper bound: curation drops text)" if est else ""))
        elif kind == "pretrain":
            steps.append(_pretrain(spec, name, cfg, vocab, device, gpus, budget, mfu, price_per_gpu_hour))
        elif kind == "evaluate":
            ctx = context or cfg.seq_len
            mem = serving_memory(model, ctx, cfg.batch_size, weights="fp32" if device == "cpu" else "bf16", vocab_size=vocab)
            steps.append(StepCost(name, device, gpus, data={"context": ctx, "batch": cfg.batch_size}, memory=mem.terms(),
                                  memory_total=mem.total, budget=budget))
        elif kind == "release":  # loads the checkpoint (FP32, as trained) and writes it
            mem = serving_memory(model, 1, weights="fp32", vocab_size=vocab)
            steps.append(StepCost(name, device, gpus, memory={"weights": mem.weights}, memory_total=mem.weights, budget=budget))
        else:
            steps.append(StepCost(name, device, gpus))
    # serving the model the spec produces, in BF16, at `context` (default: the longest it declares); no
    # device is named for it, so it gets no verdict
    serve_ctx = context or model.resolve().max_position_embeddings
    mem = serving_memory(model, serve_ctx, 1, vocab_size=vocab)
    steps.append(StepCost("serve", "bf16", 0, data={"context": serve_ctx, "batch": 1}, memory=mem.terms(), memory_total=mem.total,
                          note="not a step: serving memory of the trained model (KV cache BF16, Mamba states FP32)"))
    return PlanReport(spec.name, mfu, price_per_gpu_hour, context, steps)


def _pretrain(spec, name, cfg, vocab, device, gpus, budget, mfu, price) -> StepCost:
    layout = layout_of(spec, name)
    # the factory's trainer builds data parallelism (DDP, FSDP); tensor, pipeline and context parallelism and
    # the distributed optimizer are Megatron-Core's, so such a layout is costed as a Megatron run
    megatron = layout.sharding == "optimizer" or max(layout.tensor, layout.pipeline, layout.context) > 1
    engine = "megatron" if megatron else "factory"
    tokens = cfg.steps * cfg.seq_len * cfg.micro_batch_size * cfg.grad_accum * layout.data
    flops = flops_per_token(cfg.model, cfg.seq_len, vocab_size=vocab).training * tokens
    mem = training_memory(cfg.model, seq_len=cfg.seq_len, micro_batch=cfg.micro_batch_size, layout=layout,
                          precision=cfg.precision, engine=engine, vocab_size=vocab)
    counts = parameter_counts(cfg.model, vocab)
    data = {"params": counts.total, "tokens": tokens}
    note = f"engine {engine}, {cfg.precision}, layout dp={layout.data} tp={layout.tensor} pp={layout.pipeline} cp={layout.context} sharding={layout.sharding}"
    if not gpus:
        return StepCost(name, device, 0, data=data, flops=flops, memory=mem.terms(), memory_total=mem.total, budget=budget,
                        note=note + "; CPU step: FLOPs and memory only (no stated CPU throughput)")
    peak = GPUS[device].peak[cfg.precision]
    hours = flops / (gpus * peak * mfu) / 3600
    return StepCost(name, device, gpus, data=data, flops=flops, hours=hours, gpu_hours=hours * gpus,
                    cost=hours * gpus * price, memory=mem.terms(), memory_total=mem.total, budget=budget, note=note)


def summary_line(spec, **kwargs: Any) -> tuple[str, bool]:
    """One line for `factory run` / `submit` to print before launch, and whether every step fits."""
    report = plan_spec(spec, **kwargs)
    return report.summary_line(), report.fits


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
