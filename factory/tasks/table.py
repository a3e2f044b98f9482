"""Markdown tables of evaluation results, for eval_table.md, MLflow and the release's model card.

    task_table(eval_json["tasks"])                       # one model: set, items, accuracy, log-prob
    results_table({"base": {...}, "sft": {...}})         # model x benchmark, each cell "value ± standard error"
"""

from __future__ import annotations

from collections.abc import Mapping


def task_table(tasks: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown rows of evaluation-set scores (eval.json's "tasks"), for eval_table.md and the model card."""
    return ["| evaluation set | items | accuracy | target log-prob per token |", "|---|---|---|---|",
            *[f"| {name} | {s['items']} | {s['accuracy']:.4f} | {s['target_logprob']:.4f} |" for name, s in tasks.items()]]


def format_metric(value: float) -> str:
    """Counts as integers, everything else with four decimals."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4f}"


def results_table(results: Mapping[str, Mapping[str, tuple[float, float]]]) -> list[str]:
    """Markdown rows of model x benchmark: `results[model][benchmark] = (value, standard error)`."""
    benchmarks = sorted({b for row in results.values() for b in row})
    lines = ["| model | " + " | ".join(benchmarks) + " |", "|---|" + "---|" * len(benchmarks)]
    for model, row in results.items():
        cells = [f"{row[b][0]:.4f} ± {row[b][1]:.4f}" if b in row else "–" for b in benchmarks]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines
