"""Evaluate a checkpoint: held-out perplexity on the tokens artifact's valid split, likelihood scoring on
evaluation sets (the built-in `stdlib_cloze` last-word cloze and any JSONL set files), plus greedy samples.

    from factory.evaluate import Config, run
    run(Config(seq_len=256), {"model": checkpoint, "tokens": tokens}, out_dir, StepContext("evaluate"))

Inputs: "model" (a pretrain artifact: `model/` is a `save_pretrained` folder) and "tokens" (a tokenize
artifact: `valid.bin` + `valid.idx`, `tokenizer/`, `stats.json`). Output: `eval.json` (held-out metrics,
per-set scores under "tasks", and the config that produced them), `samples.jsonl` (one greedy completion per
prompt), `eval_table.md` (the same numbers as small tables, logged to the tracker).

Importing this package loads no torch (curate reads the built-in sets through `builtin_eval_items`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from factory.errors import InputError, SpecError
from factory.evaluate.sets import builtin_path, builtin_sets, read_set
from factory.logs import progress
from factory.stage import Artifact, StageConfig, StepContext, no_effect

if TYPE_CHECKING:
    import torch

KIND = "evaluation"

DEFAULT_PROMPTS = [
    "The history of the city",
    "Scientists have found that",
    "In the morning, the",
]


class Config(StageConfig):
    """Held-out perplexity, evaluation-set scores and greedy generation samples for one checkpoint."""

    seq_len: int = Field(256, ge=1, description="Tokens per evaluation window (each window reads seq_len + 1 tokens); "
        "evaluation-set items longer than seq_len tokens lose the start of their context.")
    batch_size: int = Field(8, ge=1, description="Windows (or evaluation-set items) per forward pass.")
    max_batches: int | None = Field(
        None, ge=1, description="Evaluate at most this many batches, taken from the start of the split; None for all."
    )
    tasks: list[str] = Field(
        default_factory=builtin_sets, description="Built-in evaluation sets to score (factory/evaluate/sets); [] for none.")
    task_files: list[str] = Field(
        default_factory=list,
        description="Further evaluation sets: JSONL files of {id, context, target} items, each named after its file stem.",
        json_schema_extra={"external_input": True},
    )
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS), description="Prompts to complete greedily.")
    max_new_tokens: int = Field(32, ge=1, description="Tokens generated per prompt.")
    seed: int = Field(0, description="Torch seed set before evaluation (greedy decoding does not depend on it).")
    log_every: int = no_effect(10, "Log a running loss every this many batches.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        known = builtin_sets()
        for name in tasks:
            if name not in known:
                raise SpecError(f"stages.evaluate.tasks: unknown evaluation set {name!r}; built-in sets: {known}")
        return tasks

    @model_validator(mode="after")
    def _distinct_names(self) -> Config:
        # a set's name keys its metrics (`<name>_accuracy`), so no two sets may share one
        if len(set(self.tasks)) < len(self.tasks):
            raise SpecError(f"stages.evaluate.tasks: an evaluation set is listed twice in {self.tasks}")
        seen = set(self.tasks)
        for file in self.task_files:
            name = Path(file).stem
            if name in seen:
                raise SpecError(f"stages.evaluate.task_files: {file} is named {name!r} (its file stem), "
                                "like another evaluation set; rename the file")
            seen.add(name)
        return self


def builtin_eval_items() -> list[tuple[str, str]]:
    """(set name, text) for every built-in set item (context + target as one text) and every default prompt.

    What curate's decontamination removes from the corpus, so the evaluate stage's own sets stay unseen.
    """
    items = [(name, item.context + item.target) for name in builtin_sets() for item in read_set(builtin_path(name))]
    return items + [("evaluate_prompts", prompt) for prompt in DEFAULT_PROMPTS]


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Evaluate `inputs["model"]` on `inputs["tokens"]`'s valid split and on the evaluation sets; write
    eval.json, samples.jsonl and eval_table.md."""
    import torch

    model_art, tokens_art = _require(inputs, "model"), _require(inputs, "tokens")
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_art.path / "model").to(device)

    loss_sum, n_tokens, n_windows = heldout_nll(model, tokens_art.path / "valid", config, device, ctx)
    nll = loss_sum / n_tokens
    heldout: dict[str, float] = {
        "valid_loss": nll,
        "valid_perplexity": math.exp(nll),
        "valid_tokens": float(n_tokens),
    }
    bytes_per_token = _bytes_per_token(tokens_art.path / "stats.json")
    if bytes_per_token:
        # nats per token -> bits per token -> bits per byte of the original text
        heldout["valid_bits_per_byte"] = nll / math.log(2) / bytes_per_token
    ctx.log_dataset(
        name="valid",
        uri=f"{tokens_art.uri}/valid",
        digest=tokens_art.manifest.get("fingerprint", ""),
        context="evaluation",
        profile={"windows": n_windows, "tokens": n_tokens, "seq_len": config.seq_len},
    )
    ctx.log.info("heldout", windows=n_windows, **{k: round(v, 4) for k, v in heldout.items()})

    tokenizer = load_tokenizer(tokens_art.path / "tokenizer")
    tasks = score_sets(model, tokenizer, config, device, ctx)
    metrics = dict(heldout)
    for name, score in tasks.items():
        metrics[f"{name}_accuracy"] = score["accuracy"]
        metrics[f"{name}_target_logprob"] = score["target_logprob"]
    ctx.log_metrics(metrics)

    samples = generate_samples(model, tokenizer, config, device)
    with open(output / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(sample) + "\n" for sample in samples)

    report = {
        "metrics": heldout,  # held-out split only; the sets' scores are under "tasks"
        "windows": n_windows,
        "config": config.model_dump(mode="json"),
        "model": {"uri": model_art.uri, "fingerprint": model_art.manifest.get("fingerprint")},
        "tokens": {"uri": tokens_art.uri, "fingerprint": tokens_art.manifest.get("fingerprint")},
        "tasks": tasks,
    }
    (output / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    table = output / "eval_table.md"
    table.write_text(_table(heldout, tasks, samples))
    ctx.log_artifact(table)
    return metrics


def load_model(folder: Path) -> torch.nn.Module:
    """Load a `save_pretrained` causal LM folder in eval mode."""
    from transformers import AutoModelForCausalLM

    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json; the model artifact must hold a save_pretrained folder in model/")
    return AutoModelForCausalLM.from_pretrained(folder).eval()


def heldout_nll(
    model: torch.nn.Module, prefix: Path, config: Config, device: torch.device, ctx: StepContext
) -> tuple[float, int, int]:
    """Summed next-token NLL (nats) over full `seq_len + 1` windows of the split at `prefix`.

    Returns (nll_sum, predicted_tokens, windows). Every window predicts its last seq_len tokens from the
    tokens before them, so predicted_tokens = windows * seq_len.
    """
    import torch
    import torch.nn.functional as F

    from factory.tokens import PackedSequences

    if not Path(f"{prefix}.idx").is_file() or not Path(f"{prefix}.bin").is_file():
        raise InputError(f"{prefix}.bin/.idx: the tokens artifact has no valid split")
    windows = PackedSequences(str(prefix), config.seq_len)
    n = len(windows)
    if config.max_batches is not None:
        n = min(n, config.max_batches * config.batch_size)
    if n == 0:
        raise InputError(
            f"{prefix}.bin: the valid split holds fewer than seq_len + 1 = {config.seq_len + 1} tokens; "
            "lower evaluate.seq_len or give tokenize a larger valid fraction"
        )
    starts = range(0, n, config.batch_size)
    loss_sum, n_tokens = 0.0, 0
    for b, start in enumerate(progress(starts, total=len(starts), desc="evaluate")):
        batch = torch.stack([windows[i] for i in range(start, min(start + config.batch_size, n))]).to(device)  # (B, T+1)
        with torch.no_grad():
            logits = model(input_ids=batch[:, :-1]).logits.float()  # (B, T, V)
        targets = batch[:, 1:]  # (B, T)
        loss_sum += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        n_tokens += targets.numel()
        if (b + 1) % config.log_every == 0:
            ctx.log.info("evaluate", batch=b + 1, running_loss=round(loss_sum / n_tokens, 4))
    return loss_sum, n_tokens, n


def load_tokenizer(folder: Path):
    """The tokens artifact's tokenizer (a `save_pretrained` folder)."""
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise InputError(f"{folder}: the tokens artifact has no tokenizer/ folder")
    return AutoTokenizer.from_pretrained(folder)


def score_sets(model: torch.nn.Module, tokenizer, config: Config, device: torch.device, ctx: StepContext) -> dict[str, dict[str, float]]:
    """Scores of every set `config` names (built-in `tasks`, then `task_files`), by set name:
    {"items", "accuracy", "target_logprob", "target_tokens"}. Items are cut to `seq_len` tokens on the left."""
    from factory.evaluate.tasks import score_set

    sets = [(name, builtin_path(name)) for name in config.tasks]
    sets += [(Path(file).stem, Path(file)) for file in config.task_files]
    scores: dict[str, dict[str, float]] = {}
    for name, path in progress(sets, total=len(sets), desc="evaluation sets"):
        if not path.is_file():
            raise InputError(f"{path}: evaluation set file not found (stages.evaluate.task_files)")
        score = score_set(model, tokenizer, read_set(path), config.seq_len, config.batch_size, device)
        scores[name] = {"items": score.items, "accuracy": score.accuracy, "target_logprob": score.target_logprob,
                        "target_tokens": score.target_tokens}
        ctx.log_dataset(
            name=name,
            uri=f"builtin:{name}" if name in config.tasks else str(path),
            digest="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
            context="evaluation",
            profile={"items": score.items},
        )
        ctx.log.info("evaluation_set", set=name, items=score.items, accuracy=round(score.accuracy, 4),
                     target_logprob=round(score.target_logprob, 4))
    return scores


def generate_samples(model: torch.nn.Module, tokenizer, config: Config, device: torch.device) -> list[dict[str, Any]]:
    """Greedy completions, one prompt at a time (no padding, so no attention-mask subtleties)."""
    import torch

    samples = []
    for prompt in config.prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)  # (1, P)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )  # (1, P + new)
        new = out[0, ids.shape[1] :].tolist()
        samples.append(
            {
                "prompt": prompt,
                "completion": tokenizer.decode(new, skip_special_tokens=True),
                "prompt_tokens": ids.shape[1],
                "new_token_ids": new,
            }
        )
    return samples


def _require(inputs: Mapping[str, Artifact], name: str) -> Artifact:
    if name not in inputs:
        raise InputError(f"evaluate needs an input named {name!r}; got {sorted(inputs)}")
    return inputs[name]


def _bytes_per_token(stats_path: Path) -> float | None:
    """UTF-8 bytes per token of the valid split, from the tokens artifact's stats.json, if it says.

    Accepted shapes: {"valid": {"bytes_per_token": x}}, {"valid": {"bytes": b, "tokens": t}},
    {"bytes_per_token": x}. Anything else: None (bits per byte is then not reported).
    """
    if not stats_path.is_file():
        return None
    try:
        stats = json.loads(stats_path.read_text())
    except json.JSONDecodeError:
        return None
    for scope in (stats.get("valid"), stats):
        if not isinstance(scope, dict):
            continue
        if isinstance(scope.get("bytes_per_token"), (int, float)) and scope["bytes_per_token"] > 0:
            return float(scope["bytes_per_token"])
        b, t = scope.get("bytes"), scope.get("tokens")
        if isinstance(b, (int, float)) and isinstance(t, (int, float)) and t > 0 and b > 0:
            return b / t
    return None


def _table(metrics: Mapping[str, float], tasks: Mapping[str, Mapping[str, float]], samples: list[dict[str, Any]]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {format_metric(v)} |" for k, v in metrics.items()]
    if tasks:
        lines += ["", *task_table(tasks)]
    lines += ["", "| prompt | greedy completion |", "|---|---|"]
    lines += [f"| {_cell(s['prompt'])} | {_cell(s['completion'])} |" for s in samples]
    return "\n".join(lines) + "\n"


def task_table(tasks: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown rows of evaluation-set scores (eval.json's "tasks"), for eval_table.md and the model card."""
    return ["| evaluation set | items | accuracy | target log-prob per token |", "|---|---|---|---|",
            *[f"| {name} | {s['items']} | {s['accuracy']:.4f} | {s['target_logprob']:.4f} |" for name, s in tasks.items()]]


def format_metric(value: float) -> str:
    """Counts as integers, everything else with four decimals."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
