"""The card's reasoning figures: held-out accuracy per reasoning mode with error bars for every evaluation in the
lineage (base, after SFT, after RL), think-block rates, accuracy against thinking budget, and the model-index
results of chat benchmarks (one per benchmark and mode).

A chat benchmark's metrics are `<benchmark>_<run>_<figure>`, run being the mode (`on`, `off`; `chat` for a template
without a switch) or `on_budget<N>` (factory/stages/evaluate/benchmarks.py); eval.json's `benchmarks` says how each
benchmark was asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from factory.tasks.table import format_metric

__all__ = ["chat_runs", "reasoning_results", "reasoning_section"]

_RUN = re.compile(r"^(?P<bench>.+)_(?P<run>on|off|chat|on_budget\d+)_pass@1$")
MODE_NAMES = {"on": "reasoning on", "off": "reasoning off", "chat": "chat template"}


def chat_runs(metrics: Mapping[str, float]) -> dict[str, list[str]]:
    """{benchmark: its chat runs, modes first then budgets ascending} found in a metrics mapping."""
    runs: dict[str, list[str]] = {}
    for key in metrics:
        if (m := _RUN.match(key)) is not None:
            runs.setdefault(m["bench"], []).append(m["run"])
    order = {"on": -3, "off": -2, "chat": -1}
    return {b: sorted(r, key=lambda run: order.get(run, int(run.removeprefix("on_budget")) if "budget" in run else 0))
            for b, r in runs.items()}


def _cell(metrics: Mapping[str, float], key: str) -> str:
    if key not in metrics:
        return "-"
    stderr = metrics.get(f"{key}_stderr")
    return format_metric(metrics[key]) + (f" ± {format_metric(stderr)}" if stderr is not None else "")


def _share(metrics: Mapping[str, float], key: str) -> str:
    return f"{metrics[key]:.0%}" if key in metrics and metrics[key] == metrics[key] else "-"


def _evaluations(chain: list[dict[str, Any]], all_metrics: Mapping[str, float], released_eval: str | None,
                 config: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, float], Mapping[str, Any]]]:
    """(lineage entry, metrics, config) of every evaluation with chat runs, earliest first; the released one's metrics
    are its eval.json's (errors included)."""
    evals = [a for a in reversed(chain) if a["kind"] == "evaluation"]
    if not any(a["fingerprint"] == released_eval for a in evals):
        evals.append({"stage": "evaluate", "fingerprint": released_eval})
    out = []
    for a in evals:
        own = a["fingerprint"] == released_eval
        metrics = dict(all_metrics) if own else {k: float(v) for k, v in (a.get("metrics") or {}).items()}
        if chat_runs(metrics):
            out.append((a, metrics, config if own else a.get("config") or {}))
    return out


def _of_released_model(chain, all_metrics, released_eval, config, model_fp):
    """The chat figures of the released model: its own evaluation's, else the nearest evaluation in the lineage that
    scored the same checkpoint (an evaluate step the released one was gated against); None without any."""
    found = [(a, m, c) for a, m, c in _evaluations(chain, all_metrics, released_eval, config)
             if a["fingerprint"] == released_eval or (a.get("inputs") or {}).get("model") == model_fp]
    return found[-1] if found else None


def reasoning_section(chain: list[dict[str, Any]], evaluation: Mapping[str, Any], all_metrics: Mapping[str, float],
                      released_eval: str | None, model_fp: str | None = None) -> list[str]:
    """The card's "Reasoning evaluation" section; nothing when no evaluation asked a chat benchmark."""
    config = evaluation.get("config") or {}
    scored = _evaluations(chain, all_metrics, released_eval, config)
    if not scored:
        return []
    stage_of = {a["fingerprint"]: a["stage"] for a in chain}
    lines = ["## Reasoning evaluation", "",
             ("Generation benchmarks asked through the chat template, each reasoning mode separately, the answer after "
              "the think block scored (greedy unless the evaluation's `generation` samples). Accuracy ± standard error "
              "over items; think: share of replies with a closed think block (malformed: opened and never closed, or "
              "misplaced); truncated: share that hit the token limit."), ""]
    for a, m, c in scored:
        prompts = {b.get("name"): b.get("prompt", "generic") for b in c.get("benchmarks") or []}
        for bench, runs in chat_runs(m).items():
            lines.append(f"- `{bench}` ({a['stage']}): chat template, prompt config `{prompts.get(bench, 'generic')}`, "
                         "runs " + ", ".join(f"`{r}`" for r in runs) + ".")
    plain = [name for name, how in (evaluation.get("benchmarks") or {}).items() if how.get("prompting") == "plain"]
    lines += [f"- `{name}`: plain text (the model has no chat template, or the benchmark completes code)." for name in plain]
    lines += ["", ("| evaluation | model | benchmark | mode | accuracy | think | malformed | truncated | thinking tokens | "
                   "answer tokens |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for a, m, _ in scored:
        model = stage_of.get((a.get("inputs") or {}).get("model"), "?")
        mark = " (this release's)" if a["fingerprint"] == released_eval else ""
        for bench, runs in chat_runs(m).items():
            for run in (r for r in runs if "budget" not in r):
                p = f"{bench}_{run}_"
                lines.append(f"| {a['stage']}{mark} | {model} | {bench} | {MODE_NAMES[run]} | {_cell(m, p + 'pass@1')} | "
                             f"{_share(m, p + 'think_closed')} | {_share(m, p + 'think_malformed')} | "
                             f"{_share(m, p + 'truncated')} | {format_metric(m.get(p + 'thinking_tokens', float('nan')))} | "
                             f"{format_metric(m.get(p + 'answer_tokens', float('nan')))} |")
    released = _of_released_model(chain, all_metrics, released_eval, config, model_fp)
    if released is not None and scored[0][0] is not released[0]:
        lines += ["", *_verdict(scored[0], released)]
    if released is not None:
        a, m, _ = released
        budgets = {b: [r for r in runs if "budget" in r] for b, runs in chat_runs(m).items()}
        budgets = {b: r for b, r in budgets.items() if r}
        if budgets:
            lines += ["", (f"Accuracy against thinking budget of the released model (evaluation {a['stage']}; reasoning "
                           "on, the think block cut at the budget and closed, then the answer):"), "",
                      "| benchmark | thinking budget | accuracy | thinking tokens | truncated |", "|---|---|---|---|---|"]
            for bench, runs in budgets.items():
                for run in [*runs, "on"]:
                    p = f"{bench}_{run}_"
                    budget = run.removeprefix("on_budget") if "budget" in run else "none"
                    lines.append(f"| {bench} | {budget} | {_cell(m, p + 'pass@1')} | "
                                 f"{format_metric(m.get(p + 'thinking_tokens', float('nan')))} | {_share(m, p + 'truncated')} |")
    return [*lines, ""]


def _verdict(first, released) -> list[str]:
    """Plainly, per benchmark and mode: whether the released model scores above the lineage's earliest evaluation by
    more than two standard errors of the difference (items independent between the two evaluations: a conservative
    error, larger than a paired one)."""
    (a0, m0, _), (_, m1, _) = first, released
    lines = []
    for bench, runs in chat_runs(m1).items():
        for run in (r for r in runs if "budget" not in r):
            key = f"{bench}_{run}_pass@1"
            if key not in m0:
                continue
            diff = m1[key] - m0[key]
            se = (m0.get(f"{key}_stderr", 0.0) ** 2 + m1.get(f"{key}_stderr", 0.0) ** 2) ** 0.5
            learned = diff > 2 * se
            lines.append(f"- `{bench}`, {MODE_NAMES[run]}: {format_metric(m1[key])} against {format_metric(m0[key])} "
                         f"at {a0['stage']} ({diff:+.3f} ± {se:.3f}): "
                         + ("learned: above the earlier model by more than two standard errors." if learned else
                            "**not measurably better** than the earlier model (within two standard errors)."))
    return lines


def reasoning_results(chain: list[dict[str, Any]], evaluation: Mapping[str, Any], all_metrics: Mapping[str, float],
                      released_eval: str | None, model_fp: str | None) -> tuple[set[str], list[dict[str, Any]]]:
    """(the chat benchmarks' names, their model-index results: one per benchmark and mode, pass@k and maj@k with
    standard errors as `<type>_stderr` entries) of the released model (`_of_released_model`)."""
    released = _of_released_model(chain, all_metrics, released_eval, evaluation.get("config") or {}, model_fp)
    if released is None:
        return set(), []
    _, figures, config = released
    configs = {b["name"]: b for b in config.get("benchmarks") or []}
    results: list[dict[str, Any]] = []
    runs = chat_runs(figures)
    for bench, modes in runs.items():
        source = configs.get(bench, {}).get("source", "?")
        task = configs.get(bench, {}).get("task") or bench
        for run in (r for r in modes if "budget" not in r):
            prefix = f"{bench}_{run}_"
            metrics = []
            for key, value in figures.items():
                figure = key.removeprefix(prefix)
                # `on_` also begins the budgeted runs' keys (`on_budget64_pass@1`): those are not this mode's
                if key.startswith(prefix) and "@" in figure and not figure.endswith("_stderr") \
                        and not figure.startswith("budget"):
                    metrics.append({"type": figure, "name": f"{figure} ({MODE_NAMES[run]})", "value": float(value)})
                    if f"{key}_stderr" in figures:
                        metrics.append({"type": f"{figure}_stderr", "name": f"{figure} standard error",
                                        "value": float(figures[f"{key}_stderr"])})
            results.append({"task": {"type": "text-generation", "name": f"{source} benchmark, {MODE_NAMES[run]}"},
                            "dataset": {"type": f"{source}:{task}", "name": bench}, "metrics": metrics})
    return set(runs), results
