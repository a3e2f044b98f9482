"""Accuracy against thinking budget: the mode-on runs of every chat benchmark, as a table and a plot.

    curve = budget_curve(eval_json["benchmarks"], eval_json["all_metrics"])
    # {"heldout": [BudgetPoint(budget=0, accuracy=0.05, stderr=0.03, thinking_tokens=0.0, truncated=0.0), ...,
    #              BudgetPoint(budget=None, ...)]}        # None: no budget (the unbudgeted run), last
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from factory.tasks.table import format_metric

__all__ = ["BudgetPoint", "budget_curve", "budget_table", "plot_budget_curve"]


@dataclass(frozen=True)
class BudgetPoint:
    """One mode-on run of a benchmark: its thinking budget (None: unbudgeted) and what it scored."""

    budget: int | None
    accuracy: float
    stderr: float
    thinking_tokens: float
    truncated: float


def budget_curve(benchmarks: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, float]) -> dict[str, list[BudgetPoint]]:
    """{benchmark: its mode-on runs by budget, the unbudgeted one last} of every chat benchmark with a budgeted run."""
    curves: dict[str, list[BudgetPoint]] = {}
    for name, summary in benchmarks.items():
        runs = {label: run for label, run in (summary.get("runs") or {}).items() if run.get("mode") == "on"}
        if not any(run.get("budget") is not None for run in runs.values()):
            continue
        # a run names the figure it is scored by (pass@1; a judge benchmark's judge_score)
        points = [BudgetPoint(run.get("budget"), metrics[f"{name}_{label}_{run.get('metric', 'pass@1')}"],
                              metrics[f"{name}_{label}_{run.get('metric', 'pass@1')}_stderr"],
                              metrics.get(f"{name}_{label}_thinking_tokens", float("nan")),
                              metrics.get(f"{name}_{label}_truncated", float("nan")))
                  for label, run in runs.items()]
        curves[name] = sorted(points, key=lambda p: (p.budget is None, p.budget or 0))
    return curves


def budget_table(curves: Mapping[str, list[BudgetPoint]]) -> str:
    """Markdown: one row per benchmark and budget."""
    lines = ["| benchmark | thinking budget | accuracy | standard error | mean thinking tokens | truncated |",
             "|---|---|---|---|---|---|"]
    for name, points in curves.items():
        lines += [f"| {name} | {p.budget if p.budget is not None else 'none'} | {format_metric(p.accuracy)} | "
                  f"{format_metric(p.stderr)} | {format_metric(p.thinking_tokens)} | {format_metric(p.truncated)} |"
                  for p in points]
    return "\n".join(lines) + "\n"


def plot_budget_curve(curves: Mapping[str, list[BudgetPoint]], path: Path) -> None:
    """Accuracy (with standard-error bars) against thinking budget, one line per benchmark; the unbudgeted run is a
    dashed line across."""
    fig = Figure(figsize=(6, 3.5))  # no pyplot: no global figure state, no display
    ax = fig.subplots()
    for name, points in curves.items():
        budgeted = [p for p in points if p.budget is not None]
        line = ax.errorbar([p.budget for p in budgeted], [p.accuracy for p in budgeted],
                           yerr=[p.stderr for p in budgeted], marker="o", capsize=3, label=name)
        for p in points:
            if p.budget is None:
                ax.axhline(p.accuracy, linestyle="--", color=line[0].get_color(), label=f"{name}, no budget")
    ax.set(xlabel="thinking budget (tokens)", ylabel="accuracy (mode on)", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
