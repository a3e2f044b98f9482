"""Judge benchmarks in the evaluate stage: the tiny model answers, a judge behind a real OpenAI-compatible HTTP server
(tests/stages/synth/fake_openai.py, standard library, on 127.0.0.1) scores; the score with its standard error, the
malformed verdicts counted and held to the error budget, the judge recorded in eval.json; configs refused at load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.errors import InputError
from factory.judge import JudgeBudgetError
from factory.plan import plan_spec
from factory.spec import parse_spec
from factory.stage import NullTracker, StepContext
from factory.stages.evaluate import Config, run
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.stages.evaluate.budget import budget_curve
from factory.stages.release.model_card import _benchmark_scores, judge_lines
from tests.cost.test_step_costs import _every_kind
from tests.stages.synth.fake_openai import FakeOpenAI

QUICK = {"perplexity": False, "seq_len": 16, "batch_size": 4, "tasks": [], "prompts": [], "generation": {"max_new_tokens": 4}}
VERDICTS = {"q0": "The answer is right.\nVerdict: correct", "q1": "Verdict: correct", "q2": "Verdict: incorrect",
            "q3": "I cannot tell."}


def questions(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Name question q{i}.", "reference": f"answer {i}"})
                            + "\n" for i in range(4)))
    return path


def by_question(prompt: str) -> str:
    """The judge's verdict depends on which question it reads (the tiny model's answers are noise)."""
    return VERDICTS[prompt.split("Name question ", 1)[1].split(".", 1)[0]]


def judge_bench(path: Path, url: str, **judge) -> BenchmarkConfig:
    return BenchmarkConfig(name="open", source="questions", task=str(path),
                           judge={"generator": {"kind": "openai", "base_url": url, "model": "judge-model"}, **judge})


def test_a_judge_scores_the_answers(upstream, tmp_path: Path):
    file = questions(tmp_path / "open.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    with FakeOpenAI(reply=by_question) as server:
        config = Config(**QUICK, benchmarks=[judge_bench(file, server.url, error_budget=0.25)])
        metrics = run(config, {"model": upstream["model"]}, out, StepContext("evaluate", tracker=NullTracker()))
        asked = [body["messages"][-1]["content"] for _, body in server.requests]
    assert metrics["open_judge_score"] == pytest.approx(2 / 3)  # of the three verdicts that parse
    assert metrics["open_judge_score_stderr"] == pytest.approx((1 / 3) ** 0.5 / 3 ** 0.5)
    assert metrics["open_judge_malformed"] == 1.0 and metrics["open_judge_malformed_rate"] == 0.25
    assert metrics["open_items"] == 4.0
    assert len(asked) == 4 and all("Reference answer:\nanswer " in a for a in asked)
    report = json.loads((out / "eval.json").read_text())
    judge = report["benchmarks"]["open"]["judge"]
    assert judge["model"] == "judge-model" and judge["prompt"] == "correctness" and judge["mode"] == "score"
    assert judge["prompt_digest"].startswith("sha256:") and judge["malformed"] == {"no_verdict": 1}
    records = [json.loads(line) for line in (out / "benchmarks.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in records] == [1.0, 1.0, 0.0, None]
    assert records[3]["judge_malformed"] == "no_verdict" and records[3]["judge_reply"] == "I cannot tell."
    # the card names the judge, its prompt file and the malformed verdicts; model-index carries the score, not counts
    lines = judge_lines(report)
    assert f"- `open`: judge `judge-model`, prompt `correctness` (`{judge['prompt_digest']}`), score; malformed " \
           "verdicts: no_verdict 1" in lines
    assert [m for _, m, _ in _benchmark_scores("open", report["all_metrics"])] == ["judge_score"]


def test_a_garbage_judge_over_the_error_budget_fails_the_step(upstream, tmp_path: Path):
    file = questions(tmp_path / "open.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    with FakeOpenAI(reply=lambda prompt: "Sure! Here is my evaluation: looks fine.") as server:
        config = Config(**QUICK, benchmarks=[judge_bench(file, server.url, error_budget=0.5)])
        with pytest.raises(JudgeBudgetError, match=r"^stages.evaluate benchmark 'open': 4 of 4 judge verdicts malformed "
                                                   r"\(100.0%: no_verdict 4\), above the judge's error_budget 50.0%"):
            run(config, {"model": upstream["model"]}, out, StepContext("evaluate", tracker=NullTracker()))
    assert not (out / "eval.json").exists()


def test_judge_benchmarks_refuse_what_they_cannot_honour(upstream, tmp_path: Path):
    file = questions(tmp_path / "open.jsonl")
    with pytest.raises(ValidationError, match="source 'questions' has no verifier; set `judge`"):
        BenchmarkConfig(name="open", source="questions", task=str(file))
    with pytest.raises(ValidationError, match="a judge scores one answer per item"):
        BenchmarkConfig.model_validate(judge_bench(file, "http://judge:8000").model_dump() | {"samples": 2})
    with pytest.raises(ValidationError, match="humaneval is scored by its tests"):
        BenchmarkConfig(name="h", source="humaneval", judge={"generator": {"kind": "openai", "base_url": "http://j",
                                                                           "model": "m"}})
    # no model folder: the judge is the step's `judge` input (a spec refuses it unwired: tests/stages/evaluate/
    # test_judge_input.py), and a run without it stops before the model loads
    from_input = BenchmarkConfig(name="open", source="questions", task=str(file), judge={"generator": {"kind": "transformers"}})
    with pytest.raises(InputError, match="needs an input named 'judge' \\(a checkpoint artifact\\)"):
        run(Config(**QUICK, benchmarks=[from_input]), {"model": upstream["model"]}, tmp_path / "out", StepContext("evaluate"))
    own = tmp_path / "judge.yaml"
    own.write_text("user: 'Is {response} a good answer to {question}? {verdict_format}'\n")
    config = Config(**QUICK, benchmarks=[judge_bench(file, "http://judge:8000", prompt=str(own))])
    # the judge's own prompt file and the questions file are raw inputs: a changed file reruns the step
    assert config.judge_files == [str(own)] and config.benchmark_files == [str(file)]
    assert "judge_files" in Config.external_fields()


def test_the_budget_curve_plots_a_judge_benchmarks_score():
    benchmarks = {"open": {"runs": {"on": {"mode": "on", "budget": None, "metric": "judge_score"},
                                    "on_budget8": {"mode": "on", "budget": 8, "metric": "judge_score"}}}}
    metrics = {"open_on_judge_score": 0.5, "open_on_judge_score_stderr": 0.1, "open_on_budget8_judge_score": 0.25,
               "open_on_budget8_judge_score_stderr": 0.1}
    assert [(p.budget, p.accuracy) for p in budget_curve(benchmarks, metrics)["open"]] == [(8, 0.25), (None, 0.5)]


def test_a_chat_model_is_judged_per_mode_and_budget(chat_checkpoint, tmp_path: Path):
    """A chat model is asked through its template in each reasoning mode and under a thinking budget; the judge scores
    each run's final answers, and the budget curve plots the judge score."""
    file = questions(tmp_path / "open.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    with FakeOpenAI(reply=by_question) as server:
        config = Config(**QUICK, budgets=[2], benchmarks=[judge_bench(file, server.url, error_budget=0.25)])
        metrics = run(config, {"model": chat_checkpoint}, out, StepContext("evaluate", tracker=NullTracker()))
        asked = len(server.requests)
    assert asked == 3 * 4  # modes on and off, and on under the budget
    for run_label in ("on", "off", "on_budget2"):
        assert metrics[f"open_{run_label}_judge_score"] == pytest.approx(2 / 3)
        assert metrics[f"open_{run_label}_judge_malformed"] == 1.0 and f"open_{run_label}_truncated" in metrics
    report = json.loads((out / "eval.json").read_text())
    assert report["benchmarks"]["open"]["judge"]["malformed"] == {"no_verdict": 3}  # added up over the runs
    assert report["benchmarks"]["open"]["runs"]["on_budget2"]["metric"] == "judge_score"
    assert "| open | 2 |" in (out / "budget_curve.md").read_text()


def test_plan_counts_a_questions_file_and_names_the_judge_as_not_counted(tmp_path: Path):
    file = questions(tmp_path / "open.jsonl")
    data = _every_kind(tmp_path)
    data["steps"]["evaluate"]["config"] = {"seq_len": 128, "benchmarks": [
        judge_bench(file, "http://judge:8000").model_dump(mode="json", exclude_defaults=True)]}
    planned = {s.step: s for s in plan_spec(parse_spec(data)).steps}["evaluate"]
    assert "judge" in planned.note and "items not counted" not in planned.note
    assert planned.data["generated"] >= 4 * 256  # the four questions answered at generation.max_new_tokens
