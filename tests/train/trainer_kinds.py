"""Tiny real inputs and configs for every kind that trains through the training-stage shell, and a probe callback
that records what a run did (added through the run context, as any caller can).

    inputs = kind_inputs(root, chat, letters)      # built once: tokens, checkpoints, conversations, a reward model
    signature = run_kind("sft", {"precision": "fp8"}, inputs, out)

A signature is what a person could observe of a run: the per-step loss, lr, gradient norm and tokens; the
converters and layers the trained model held; the optimizer's settings; which checkpoints were written; which steps
reached the tracker; the stage's summary (timings left out); the exported weights' digest; or the error it raised.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from factory.errors import UserError
from factory.kinds import KINDS
from factory.model.converter_order import applied_converters
from factory.precision import Float8Linear, NVFP4Linear
from factory.stage import Artifact, NullTracker, StepContext
from factory.train.trainer import Callback
from tests.builders import (
    addition_heldout,
    additions,
    checkpoint,
    choice_prompt,
    choice_tokenizer,
    conversations,
    learnable_docs,
    stage_output,
    tokenizer,
    tokens,
)
from tests.spine import ROOT

TRAINERS = ("pretrain", "sft", "rl", "preference", "reward_model", "distill", "opd")
SCORED = ROOT / "examples" / "reward_model" / "scored_responses.jsonl"

# The smallest run of each kind that still does everything its stage does (a few steps, short sequences).
BASE: dict[str, dict[str, Any]] = {
    "pretrain": {"seq_len": 32, "micro_batch_size": 4, "steps": 6, "warmup_steps": 1, "checkpoint_interval": 0},
    "sft": {"seq_len": 96, "micro_batch_size": 4, "steps": 6, "warmup_steps": 1, "checkpoint_interval": 0,
            "valid_max": 4, "switch_prompts": 2},
    "rl": {"steps": 2, "lr": 1e-3, "micro_batch_size": 16, "checkpoint_interval": 0,
           "rollout": {"group_size": 8, "reasoning": "off",
                       "length_schedule": [{"until_fraction": 1.0, "max_new_tokens": 3}]}},
    "preference": {"seq_len": 96, "micro_batch_size": 2, "steps": 6, "warmup_steps": 1, "checkpoint_interval": 0,
                   "judge": "reward_model", "samples_per_prompt": 2, "max_prompts": 6, "heldout_prompts": 2,
                   "max_new_tokens": 6, "generation_batch": 8},
    "reward_model": {"data": str(SCORED), "seq_len": 64, "micro_batch_size": 4, "steps": 6, "warmup_steps": 1,
                     "checkpoint_interval": 0},
    "distill": {"seq_len": 32, "micro_batch_size": 4, "steps": 6, "warmup_steps": 1, "checkpoint_interval": 0,
                "valid_samples": 4},
    "opd": {"steps": 4, "lr": 1e-3, "micro_batch_size": 8, "samples_per_prompt": 2, "max_new_tokens": 3,
            "reasoning": "off", "checkpoint_interval": 0},
}


def kind_inputs(root: Path, chat: Artifact, letters: Artifact) -> dict[str, dict[str, Artifact]]:
    """Every trainer kind's inputs, by kind: word-level token data with two checkpoints of its vocabulary (pretrain,
    distill), the chat checkpoint `chat` with arithmetic conversations (sft, preference, reward_model), a reward model
    trained from it (preference judges its pairs with it), and the letter-answering policy `letters` (rl:
    tests/stages/rl/letter_policy.py) with multiple-choice prompts (rl; opd's teacher, with a random-init student of its
    tokenizer)."""
    word = tokenizer("word")
    data = tokens(root / "tokens", word, {"train": learnable_docs(120, seed=0), "valid": learnable_docs(20, seed=1)})
    student, teacher = checkpoint(root / "student", word, seed=1), checkpoint(root / "teacher", word, seed=2)
    chats = conversations(root / "conversations", additions(24), heldout=addition_heldout())
    choices = conversations(root / "choice", prompts=[choice_prompt(i) for i in range(16)])
    # opd: a random-init student with the letter policy's tokenizer, distilled from the letter policy
    opd_student = checkpoint(root / "opd_student", choice_tokenizer(), seed=3, step="sft")
    reward = stage_output("reward_model", KINDS["reward_model"].config(**BASE["reward_model"]), {"model": chat},
                          root / "reward_model")
    return {"pretrain": {"tokens": data}, "distill": {"student": student, "teacher": teacher, "tokens": data},
            "sft": {"model": chat, "data": chats}, "rl": {"model": letters, "data": choices},
            "reward_model": {"model": chat}, "preference": {"model": chat, "data": chats, "reward_model": reward},
            "opd": {"model": opd_student, "teacher": letters, "data": choices}}


class StopAtStart(Exception):
    """Raised by a probe asked to stop a run once it has recorded its start (a compiled model is never run)."""


class Probe(Callback):
    """Records what the trainer holds and does: at the start, its config and named callbacks, the converters and
    layers of the trained model, the optimizer's settings and the model's next-token loss on a fixed sequence (under
    the run's autocast, so two precisions compare like for like); each step, its metrics and the checkpoints on
    disk. With `stop_at_start`, it stops the run after recording the converters."""

    def __init__(self, checkpoints: Path, stop_at_start: bool = False) -> None:
        self.checkpoints, self.stop_at_start = checkpoints, stop_at_start
        self.record: dict[str, Any] = {"steps": [], "checkpoints": []}
        self.trainer_config: Any = None

    def on_train_start(self, trainer) -> None:
        self.trainer_config = trainer.config
        self.record["callbacks"] = [type(c).__name__ for c in trainer.callbacks]
        model = trainer.objective.model
        model = getattr(model, "module", model)  # DDP
        model = getattr(model, "backbone", model)  # a reward model's causal LM
        self.record["converters"] = applied_converters(model)
        if self.stop_at_start:
            raise StopAtStart
        kinds = [type(m).__name__ for m in model.modules() if isinstance(m, (Float8Linear, NVFP4Linear))]
        group = trainer.optimizer.param_groups[0]
        ids = (torch.arange(1, 34) * 7 % min(model.config.vocab_size, 500)).unsqueeze(0).to(trainer.device)
        with torch.no_grad(), trainer._autocast():
            logits = model(input_ids=ids[:, :-1], use_cache=False).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()
        self.record.update({
            "low_precision": {k: kinds.count(k) for k in set(kinds)},
            "checkpointing": bool(getattr(model, "is_gradient_checkpointing", False)),
            "optimizer": {"betas": group["betas"], "weight_decay": [g["weight_decay"] for g in trainer.optimizer.param_groups],
                          "fused": group.get("fused"), "params": sum(p.numel() for g in trainer.optimizer.param_groups
                                                                     for p in g["params"])},
            "start_nll": nll,
        })

    def on_step_end(self, trainer, metrics) -> None:
        self.record["steps"].append({"loss": metrics.loss, "lr": metrics.lr, "grad_norm": metrics.grad_norm,
                                     "tokens": metrics.tokens, "skipped": metrics.skipped})
        if self.checkpoints.is_dir():
            self.record["checkpoints"].append(sorted(p.name for p in self.checkpoints.iterdir() if p.name.startswith("step-")))


def run_kind(kind: str, overrides: dict[str, Any], inputs: dict[str, dict[str, Artifact]], out: Path,
             stop_at_start: bool = False) -> dict[str, Any]:
    """Run one tiny step of `kind` with `overrides` on top of its BASE config; the run's signature (see the module
    docstring). A config the kind refuses is the signature {"refused": message}; a run that fails, {"error": ...}."""
    try:
        config = KINDS[kind].config(**{**BASE[kind], **overrides})
    except (ValueError, UserError) as e:
        return {"refused": str(e)}
    probe = Probe(out / "checkpoints", stop_at_start)
    ctx = StepContext(kind, tracker=NullTracker(), callbacks=[probe])
    try:
        summary = KINDS[kind].run(config, inputs[kind], out, ctx)
    except StopAtStart:
        return probe.record
    except (UserError, RuntimeError) as e:
        return {"error": f"{type(e).__name__}: {e}", **probe.record}
    weights = sorted((out / "model").glob("*.safetensors"))
    return {
        **probe.record,
        "shell_config_is_the_stage_config": probe.trainer_config is config,
        "records": records_digest(out),
        "summary": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()
                    if "seconds" not in k},
        "tracked_steps": sorted({step for _, step in ctx.tracker.metrics if step is not None}),
        "weights": hashlib.sha256(b"".join(p.read_bytes() for p in weights)).hexdigest(),
        "files": sorted(p.name for p in out.iterdir()),
    }


def records_digest(out: Path) -> str:
    """A digest of the stage's own JSON and JSONL records (rollouts, pairs, summaries), timings left out."""
    h = hashlib.sha256()
    for path in sorted([*out.glob("*.json"), *out.glob("*.jsonl")]):
        if path.name in ("metrics.jsonl", "manifest.json"):  # the steps' metrics are in the signature already
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line) if path.suffix == ".jsonl" else None
                if record is None:
                    h.update(json.dumps(_untimed(json.loads(path.read_text())), sort_keys=True).encode())
                    break
                h.update(json.dumps(_untimed(record), sort_keys=True).encode())
    return h.hexdigest()


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k and "per_s" not in k}
    return value
