"""The work a step does, as the kinds' cost hooks share it: a training run through the training-stage shell, a
model's forward passes, sampling from a model, and the stated rules of thumb a plan falls back on where nothing is
measured.

    trainer_cost(plan, step, plan.model_of(step), seq_len=512, extra_flops={"generation": 3e15})

Every trainer kind (pretrain, sft, rl, preference, reward_model, distill) is costed by `trainer_cost`: FLOPs of
forward + backward over the tokens it trains on, memory per GPU of one training step (`training_memory` on the
step's layout, precision and activation checkpointing), time and money at the plan's MFU; the kind supplies only
what differs: the rows of a micro-batch and their length, and the work besides training (rollouts, reference and
teacher forwards, with the memory of the models they hold).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.cost.estimate import PlanContext, PlannedModel, StepCost
from factory.cost.flops import flops_per_token
from factory.cost.memory import FORMAT_BYTES, training_memory
from factory.cost.param_count import parameter_counts
from factory.model import ModelSpec

# Rules of thumb, each stated where it is used and replaced by a measured count where a published build has one.
BYTES_PER_TOKEN = 4.0  # UTF-8 text bytes per BPE token of English web text
PROMPT_TOKENS = 128  # a chat-rendered prompt with its system line (the reasoning switch), in tokens


def forward_flops(model: PlannedModel, tokens: float, seq_len: int) -> float:
    """Forward FLOPs of `tokens` tokens through `model` in sequences of `seq_len`."""
    return flops_per_token(model.config, max(int(seq_len), 1), vocab_size=model.vocab_size).forward * tokens


def generation_flops(model: PlannedModel, sequences: float, prompt_tokens: int, new_tokens: int) -> float:
    """Forward FLOPs of sampling `new_tokens` after a `prompt_tokens` prompt, `sequences` times, with a KV cache (and
    Mamba states): the prompt's prefill plus one forward of each new token over the cache. Position p attends to p
    earlier tokens, so the whole is one causal forward over the L = prompt + new tokens of each sequence."""
    length = prompt_tokens + new_tokens
    return forward_flops(model, sequences * length, length)


def weight_bytes(model: PlannedModel, fmt: str = "fp32") -> int:
    """Bytes of `model`'s weights in `fmt` (a frozen copy a step holds besides the one it trains: FP32, as loaded)."""
    return round(parameter_counts(model.config, model.vocab_size).total * FORMAT_BYTES[fmt])


def trained_tokens(plan: PlanContext, step: Any, seq_len: int, rows: int | None = None) -> int:
    """Tokens a trainer step's run passes forward and backward: `rows` sequences of `seq_len` per micro-batch (default
    `micro_batch_size`), `grad_accum` micro-batches per step on each data-parallel rank, `steps` steps."""
    cfg = step.config
    rows = cfg.micro_batch_size if rows is None else rows
    return cfg.steps * cfg.grad_accum * plan.layout(step).data * rows * seq_len


def trainer_cost(plan: PlanContext, step: Any, model: PlannedModel, *, seq_len: int, rows: int | None = None,
                 extra_flops: dict[str, float] | None = None, extra_memory: dict[str, int] | None = None,
                 data: dict[str, float] | None = None, notes: tuple[str, ...] = (), estimated: bool = False,
                 measured: tuple[str, ...] = ()) -> StepCost:
    """The cost of a training run of `step` (a trainer kind's config: `steps`, `grad_accum`, `precision`, ...) on
    `model`: `rows` sequences of `seq_len` tokens per micro-batch and rank (default `micro_batch_size`), `grad_accum`
    micro-batches per step on every data-parallel rank, for `steps` steps, forward and backward; `extra_flops` is
    the run's other work by name and `extra_memory` the bytes it holds besides the training step's. The step makes
    a checkpoint of the same shape."""
    cfg = step.config
    layout = plan.layout(step)
    # the factory's trainer builds data parallelism (DDP, FSDP); tensor, pipeline and context parallelism and
    # the distributed optimizer are Megatron-Core's, so such a layout is costed as a Megatron run
    megatron = layout.sharding == "optimizer" or max(layout.tensor, layout.pipeline, layout.context) > 1
    engine = "megatron" if megatron else "factory"
    rows = cfg.micro_batch_size if rows is None else rows
    tokens = trained_tokens(plan, step, seq_len, rows)
    work = {"train": flops_per_token(model.config, seq_len, vocab_size=model.vocab_size).training * tokens,
            **(extra_flops or {})}
    flops = sum(work.values())
    recompute = cfg.activation_checkpointing
    mem = training_memory(model.config, seq_len=seq_len, micro_batch=rows, layout=layout, precision=cfg.precision,
                          recompute=recompute, engine=engine, vocab_size=model.vocab_size)
    extra_memory = extra_memory or {}
    parts = [f"engine {engine}, {cfg.precision}, layout dp={layout.data} tp={layout.tensor} pp={layout.pipeline} "
             + f"cp={layout.context} sharding={layout.sharding}"]
    if len(work) > 1:
        parts.append("FLOPs " + ", ".join(f"{name} {_share(v, flops)}" for name, v in work.items()))
    parts += notes
    timed = plan.timed(step.name, flops, cfg.precision, layout.gpus)
    reserved = plan.device(step.name).gpus
    if reserved > layout.gpus:
        parts.append(f"runs on {layout.gpus} of the {reserved} GPUs it reserves")
    if not reserved:
        seconds = plan.measured(step.name).get("train_seconds")
        if seconds:  # a CPU's throughput is stated nowhere: only a build that ran says how long it takes
            timed, measured = {"hours": seconds / 3600}, (*measured, "time")
        else:
            parts.append("CPU step: FLOPs and memory only (no stated CPU throughput)")
    params = parameter_counts(model.config, model.vocab_size).total
    return plan.cost(step, data={"params": params, "tokens": tokens, **(data or {})}, flops=flops,
                     memory={**mem.terms(), **extra_memory}, memory_total=mem.total + sum(extra_memory.values()),
                     note="; ".join(parts), estimated=estimated, measured=measured, model=model, **timed)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "0%"


def count_records(paths: list[str]) -> int | None:
    """Lines of the local JSONL files `paths` (one record a line, blank lines left out); None when one is not a local
    file this machine can read (an object-store URI, a missing path): then the count is unknown."""
    total = 0
    for path in paths:
        p = Path(path).expanduser()
        if "://" in path or not p.is_file():
            return None
        with p.open("rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


def max_context(model: PlannedModel) -> int | None:
    """The longest context `model` declares (`max_position_embeddings`), None when its shape does not say."""
    config = model.config.resolve() if isinstance(model.config, ModelSpec) else model.config
    return getattr(config, "max_position_embeddings", None)
