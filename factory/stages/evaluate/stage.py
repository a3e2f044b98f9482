"""The evaluate stage: held-out perplexity (when on), cloze sets, likelihood multiple choice (the factory's files
and lm-eval task files), generation benchmarks scored by the verifiers, greedy samples, then the gates.

    from factory.stages.evaluate import Config, run
    run(Config(seq_len=256), {"model": checkpoint, "tokens": tokens}, out_dir, StepContext("evaluate"))
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Mapping
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch

from factory.artifacts import Checkpoint, Conversations, Evaluation, Tokens
from factory.chat.template import folder_chat_template, reasoning_switch
from factory.errors import InputError
from factory.generate.decode_speed import throughput_metrics
from factory.generate.transformers_model import render_chat
from factory.judge import Judge
from factory.stage import Artifact, StepContext
from factory.stages.evaluate.benchmarks import ChatSetup, run_benchmark
from factory.stages.evaluate.budget import budget_curve, budget_table, plot_budget_curve
from factory.stages.evaluate.config import Config
from factory.stages.evaluate.gates import check_gates, parse_gate
from factory.stages.evaluate.likelihood import score_lm_eval_task, score_multiple_choice
from factory.stages.evaluate.metrics import mean_estimate, perplexity
from factory.stages.evaluate.perplexity import bytes_per_token, heldout_nll
from factory.stages.evaluate.samples import folder_tokenizer, generate_samples, load_model, score_sets
from factory.stages.evaluate.throughput import measure, plot, table
from factory.tasks.files import read_task_file
from factory.tasks.lm_eval_task import read_lm_eval_task
from factory.tasks.table import format_metric, results_table, task_table
from factory.tokens import (
    load_tokenizer,  # imports torch, which loading a spec must not
)
from factory.verify.math_answer import MathVerifier
from factory.verify.sandbox import SandboxConfig


def _baseline_metrics(inputs: Mapping[str, Artifact]) -> dict[str, dict[str, float]]:
    """{baseline step name: its metrics} for the relative gates, or {} when no baseline is wired."""
    if "baseline" not in inputs:
        return {}
    baseline = Evaluation.of(inputs, "baseline")
    results = baseline.results()
    return {inputs["baseline"].manifest["stage"]: results.get("all_metrics", results.get("metrics", {}))}


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Evaluate `inputs["model"]` on `inputs["tokens"]`'s valid split (when perplexity is on), the evaluation sets,
    the lm-eval tasks and the benchmarks; check the gates; write eval.json, samples.jsonl, benchmarks.jsonl,
    lm_eval_items.jsonl and eval_table.md."""
    model_dir = Checkpoint.of(inputs, "model").model_dir  # checks the layouts: one line naming what is missing
    model_art, tokens_art = inputs["model"], inputs.get("tokens")
    # the judges without a model folder share the `judge` input's model (checked before the evaluated model loads)
    judge_dir = Checkpoint.of(inputs, "judge").model_dir if config.input_judges else None
    valid = Tokens.of(inputs, "tokens").split("valid") if config.perplexity else None
    gates = [parse_gate(g, field=f"stages.evaluate.gates[{i}]") for i, g in enumerate(config.gates)]
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_dir).to(device)

    heldout: dict[str, float] = {}
    metrics: dict[str, float] = {}
    n_windows = 0
    if valid is not None:
        heldout, metrics, n_windows = _heldout(model, valid, inputs["tokens"], config, device, ctx)

    tokenizer = load_tokenizer(tokens_art.path) if tokens_art is not None else folder_tokenizer(model_dir)
    tasks = score_sets(model, tokenizer, config, device, ctx)
    for name, score in tasks.items():
        metrics[f"{name}_accuracy"] = score["accuracy"]
        correct = round(score["accuracy"] * score["items"])
        metrics[f"{name}_accuracy_stderr"] = mean_estimate([1.0] * correct + [0.0] * (score["items"] - correct)).stderr
        metrics[f"{name}_target_logprob"] = score["target_logprob"]
    metrics |= _multiple_choice(model, tokenizer, config, ctx)
    lm_eval, lm_eval_records = _lm_eval_tasks(model, tokenizer, config, ctx)
    for name, summary in lm_eval.items():
        metrics |= {f"{name}_{k}": v for k, v in summary["metrics"].items()}
    records: list[dict[str, Any]] = []
    benchmarks: dict[str, dict[str, Any]] = {}
    if config.benchmarks:
        data = Conversations.of(inputs, "data").path if "data" in inputs else None
        bench_metrics, records, benchmarks = _benchmarks(model_art, tokens_art, config, ctx, tokenizer, data, judge_dir)
        metrics |= bench_metrics
    throughput = _throughput(model, config)
    if throughput:
        metrics |= throughput_metrics(throughput, config.throughput_batch)
    # the gates run before anything is written: a failing gate fails the step and nothing is published
    check_gates(gates, metrics, _baseline_metrics(inputs))

    accuracy_by_budget = budget_curve(benchmarks, metrics)
    if accuracy_by_budget:  # accuracy against thinking budget, per benchmark: a table and a plot, to MLflow too
        plot_budget_curve(accuracy_by_budget, output / "budget_curve.png")
        (output / "budget_curve.md").write_text(budget_table(accuracy_by_budget))
        ctx.log_artifact(output / "budget_curve.png")
        ctx.log_artifact(output / "budget_curve.md")
    if throughput:  # the table, plot and record name the machine that measured them (the card quotes it)
        plot(throughput, output / "throughput.png")
        (output / "throughput.md").write_text(table(throughput))
        (output / "throughput.json").write_text(json.dumps(throughput, indent=2) + "\n")
        for name in ("throughput.png", "throughput.md", "throughput.json"):
            ctx.log_artifact(output / name)
    samples = generate_samples(model, tokenizer, config, device)
    with open(output / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(sample) + "\n" for sample in samples)
    if records:
        with open(output / "benchmarks.jsonl", "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)
    if lm_eval_records:
        with open(output / "lm_eval_items.jsonl", "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in lm_eval_records)
    report = {
        "metrics": heldout,  # held-out split only; the sets' scores are under "tasks", errors under "all_metrics"
        "windows": n_windows,
        "config": config.model_dump(mode="json"),
        "model": {"uri": model_art.uri, "fingerprint": model_art.manifest.get("fingerprint")},
        "tokens": {"uri": tokens_art.uri, "fingerprint": tokens_art.manifest.get("fingerprint")} if tokens_art else None,
        "tasks": tasks,
        "lm_eval": lm_eval,
        # per generation benchmark, which way its figures were produced: "plain" text, or "chat" through the
        # template (prompt config, runs by reasoning mode and thinking budget)
        "benchmarks": benchmarks,
        "all_metrics": metrics,
        "throughput": throughput,  # decode speed with its machine, or None when not measured
        "gates": config.gates,
    }
    (output / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    eval_table = output / "eval_table.md"
    eval_table.write_text(_table(heldout, tasks, samples, _with_errors(model_art.uri, metrics)))
    ctx.log_artifact(eval_table)
    return metrics


def _heldout(model, valid: Path, tokens_art: Artifact, config: Config, device: torch.device,
             ctx: StepContext) -> tuple[dict[str, float], dict[str, float], int]:
    """(held-out figures, their standard errors, windows) on the tokens' valid split."""
    loss_sum, n_tokens, n_windows, per_window = heldout_nll(model, valid, config, device, ctx)
    per_byte = bytes_per_token(tokens_art.path / "stats.json")
    figures = perplexity(per_window, [config.seq_len] * len(per_window),
                         n_bytes=n_tokens * per_byte if per_byte else None)
    heldout: dict[str, float] = {
        "valid_loss": loss_sum / n_tokens,
        "valid_perplexity": math.exp(loss_sum / n_tokens),
        "valid_tokens": float(n_tokens),
    }
    if per_byte:
        # nats per token -> bits per token -> bits per byte of the original text
        heldout["valid_bits_per_byte"] = heldout["valid_loss"] / math.log(2) / per_byte
    errors = {f"valid_{k}": float(v) for k, v in figures.items() if k.endswith("_stderr")}
    ctx.log_dataset(
        name="valid",
        uri=f"{tokens_art.uri}/valid",
        digest=tokens_art.manifest.get("fingerprint", ""),
        context="evaluation",
        profile={"windows": n_windows, "tokens": n_tokens, "seq_len": config.seq_len},
    )
    ctx.log.info("heldout", windows=n_windows, **{k: round(v, 4) for k, v in heldout.items()})
    return heldout, dict(heldout) | errors, n_windows


def _lm_eval_tasks(model, tokenizer, config: Config, ctx: StepContext) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """({task: what eval.json records of it, its metrics included}, one record per doc) of every lm-eval task file."""
    summaries: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for file in config.lm_eval_tasks:
        task = read_lm_eval_task(Path(file))
        scored = score_lm_eval_task(model, tokenizer, task, config.batch_size)
        figures = {k: v for name, e in scored.metrics.items() for k, v in e.as_dict(name).items()}
        docs = hashlib.sha256(b"".join(f.read_bytes() for f in task.files())).hexdigest()
        summaries[task.name] = {
            "file": str(task.path), "digest": task.digest, "docs_digest": f"sha256:{docs}",
            "version": (task.definition.metadata or {}).get("version"), "output_type": task.definition.output_type,
            "split": task.eval_split, "items": len(scored.records), "num_fewshot": task.num_fewshot,
            "max_length": scored.max_length, "truncated": scored.truncated, "metrics": figures}
        records += scored.records
        ctx.log_dataset(name=task.name, uri=str(task.path), digest=f"sha256:{docs}", context="evaluation",
                        profile={"items": len(scored.records), "num_fewshot": task.num_fewshot,
                                 "version": summaries[task.name]["version"]})
        ctx.log.info("lm_eval_task", task=task.name, items=len(scored.records), truncated=scored.truncated,
                     **{k: round(v, 4) for k, v in figures.items()})
    return summaries, records


def _throughput(model, config: Config) -> dict[str, Any] | None:
    """The throughput record (`throughput.measure`) at each configured context, at batch 1 and the configured batch;
    None when no context is configured."""
    if not config.throughput_contexts:
        return None
    return measure(model, config.throughput_contexts, sorted({1, config.throughput_batch}), config.throughput_baseline)


def _multiple_choice(model, tokenizer, config: Config, ctx: StepContext) -> dict[str, float]:
    """acc and acc_norm of each multiple-choice file, by log-likelihood."""
    metrics: dict[str, float] = {}
    for file in config.multiple_choice_files:
        read = read_task_file(Path(file))
        if read.task_type != "multiple_choice":
            raise InputError(f"{file}: stages.evaluate.multiple_choice_files takes multiple_choice task files, "
                             f"this one declares {read.task_type!r}")
        acc, acc_norm, _ = score_multiple_choice(model, tokenizer, read.items, max_len=config.seq_len,
                                                 batch_size=config.batch_size)
        metrics |= acc.as_dict(f"{read.name}_acc") | acc_norm.as_dict(f"{read.name}_acc_norm")
        ctx.log_dataset(name=read.name, uri=read.path, digest=read.digest, context="evaluation",
                        profile={"items": len(read.items), "skipped": read.skipped, "version": read.version})
    return metrics


def _benchmarks(model_art: Artifact, tokens_art: Artifact | None, config: Config, ctx: StepContext, tokenizer,
                data: Path | None = None, judge_dir: Path | None = None):
    """Generate for and verify every configured benchmark; (metrics, per-item records, {benchmark: how it was
    asked}). A chat model is asked through its template, per mode and budget; any other in plain text. A judge
    without a model folder reads `judge_dir` (the `judge` input's model)."""
    metrics: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    summaries: dict[str, dict[str, Any]] = {}
    sandbox = SandboxConfig(isolation=config.sandbox_isolation, timeout_s=10, cpu_s=10, memory_mb=1024)
    with tempfile.TemporaryDirectory(prefix="factory-evaluate-") as tmp, MathVerifier(workers=2, timeout_s=10) as verifier:
        generator, folder = _generator(model_art, tokens_art, config, Path(tmp))
        template = folder_chat_template(folder) if folder is not None else None
        if template is not None and getattr(generator, "render", False) is None:
            # an endpoint: a thinking budget continues a cut chat reply as text, rendered with the model's template
            generator.render = partial(render_chat, tokenizer)
        count = getattr(generator, "count_tokens", None) or \
            (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        for i, bench in enumerate(config.benchmarks):
            params = config.generation.model_copy(update={"seed": config.generation.seed + bench.seed})
            chat = _chat_setup(bench, config, template, folder, i) if template is not None else None
            judging = bench.judge.with_model(judge_dir) if bench.judge is not None and bench.judge.from_input else \
                bench.judge
            with Judge(judging) if judging is not None else nullcontext() as judge:
                result = run_benchmark(bench, generator, params, sandbox, verifier, log=ctx.log, chat=chat,
                                       count_tokens=count if chat is not None else None, data=data, judge=judge)
            metrics |= result.metrics
            records += [{"benchmark": bench.name, **r} for r in result.records]
            # "judge": who scored a judge benchmark (model, digest, prompt file) and its malformed verdicts by reason
            summaries[bench.name] = {k: result.dataset[k] for k in ("prompting", "prompt", "prompt_digest", "runs",
                                                                    "judge") if k in result.dataset}
            ctx.log_dataset(name=bench.name, uri=result.dataset["uri"], digest=result.dataset["digest"],
                            context="evaluation", profile={k: v for k, v in result.dataset.items()
                                                           if k in ("items", "skipped", "version", "prompting")})
    return metrics, records, summaries


def _chat_setup(bench, config: Config, template: str, folder: Path, index: int) -> ChatSetup:
    """The runs a chat model's benchmark gets: its modes (the step's, or both when the template has a switch) and
    budgets; a mode asked of a template without a switch is refused in one line naming the field."""
    switch = reasoning_switch(template)
    asked, field = (bench.modes, f"benchmarks[{index}].modes") if bench.modes else (config.modes, "modes")
    if asked and not switch:
        raise InputError(f"stages.evaluate.{field}: {asked} asks for the reasoning switch, but the chat template of "
                         f"{folder} has none (neither enable_thinking nor a `detailed thinking` system prompt); "
                         "remove the modes")
    modes: tuple[str | None, ...] = tuple(asked) if asked else (("on", "off") if switch else (None,))
    budgets = bench.budgets if bench.budgets is not None else config.budgets
    return ChatSetup(modes=modes, budgets=tuple(budgets), system_switch="system_prompt" in switch)


def _generator(model_art: Artifact, tokens_art: Artifact | None, config: Config, scratch: Path):
    """(the generator the config chooses, the model folder whose chat template it answers with); without a
    model_dir, the local one is the checkpoint with the tokens' tokenizer. An endpoint is taken to serve the
    checkpoint evaluated (its folder's template)."""
    settings = config.generator
    if settings.model_dir:
        return settings.open(), Path(settings.model_dir)
    if settings.kind == "openai":
        return settings.open(), _linked_folder(model_art, tokens_art, scratch)
    folder = _linked_folder(model_art, tokens_art, scratch)
    return settings.open(folder, model_id=model_art.uri), folder


def _linked_folder(model_art: Artifact, tokens_art: Artifact | None, scratch: Path) -> Path:
    """The checkpoint's model folder with the tokenizer evaluated with: the tokens' when wired (both folders' files
    linked into one)."""
    folder = scratch / "model"
    folder.mkdir()
    tokenizer = [tokens_art.path / "tokenizer"] if tokens_art is not None else []
    for source in (*tokenizer, model_art.path / "model"):
        for file in source.iterdir():
            if not (folder / file.name).exists():
                (folder / file.name).symlink_to(file.resolve())
    return folder


def _with_errors(model: str, metrics: Mapping[str, float]) -> dict[str, dict[str, tuple[float, float]]]:
    """{model: {metric: (value, standard error)}} of every metric that has a standard error."""
    return {model: {k: (v, metrics[f"{k}_stderr"]) for k, v in metrics.items() if f"{k}_stderr" in metrics}}


def _table(metrics: Mapping[str, float], tasks: Mapping[str, Mapping[str, float]], samples: list[dict[str, Any]],
           results: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> str:
    lines = ["| metric | value |", "|---|---|", *[f"| {k} | {format_metric(v)} |" for k, v in metrics.items()]] if metrics else []
    if tasks:
        lines += ["", *task_table(tasks)]
    if results:
        lines += ["", *results_table(results)]
    lines += ["", "| prompt | greedy completion |", "|---|---|"]
    lines += [f"| {_cell(s['prompt'])} | {_cell(s['completion'])} |" for s in samples]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
