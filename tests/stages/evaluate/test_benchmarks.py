"""The evaluate stage with generation benchmarks and gates, on the tiny checkpoint; malformed output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from factory.errors import SpecError
from factory.stages.evaluate import Config, run
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.stages.evaluate.gates import GateFailed
from factory.stages.evaluate.benchmarks import run_benchmark
from factory.generate import GenerationParams
from factory.stage import Artifact, NullTracker, StepContext
from factory.tasks.files import write_task_file
from factory.verify.math_answer import MathVerifier
from factory.verify.sandbox import SandboxConfig
from tests.builders import publish

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (tests/setup.sh installs it)")
QUICK = dict(seq_len=16, batch_size=4, max_batches=1, tasks=[], prompts=[])


def _run(config, upstream, out: Path):
    out.mkdir()
    ctx = StepContext("evaluate", tracker=NullTracker())
    return run(config, {"model": upstream["model"], "tokens": upstream["tokens"]}, out, ctx), ctx


def test_a_failing_gate_fails_the_step_naming_gate_value_and_bound(upstream, tmp_path: Path):
    with pytest.raises(GateFailed, match=r"gate 'valid_perplexity <= 10' failed: valid_perplexity = \d+\.?\d* > 10"):
        _run(Config(**QUICK, gates=["valid_perplexity <= 10"]), upstream, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing written, so nothing to publish
    metrics, _ = _run(Config(**QUICK, gates=["valid_perplexity <= 100000", "valid_loss > 0"]), upstream, tmp_path / "ok")
    assert metrics["valid_perplexity"] > 10
    with pytest.raises(SpecError, match=r"gates\[0\]: 'perplexity is low' is not a gate"):
        Config(gates=["perplexity is low"])


def _baseline(tmp_path: Path, step: str, metrics: dict[str, float]) -> Artifact:
    folder = tmp_path / f"{step}-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({"metrics": {}, "all_metrics": metrics}))
    return publish(folder, step, "evaluation", metrics=metrics, stage_kind="evaluate")


def test_a_gate_relative_to_the_baseline_step_multiplies_its_metric(upstream, tmp_path: Path):
    config = Config(**QUICK, gates=["valid_perplexity <= 1.03 * eval_bf16.valid_perplexity"])
    assert config.required_inputs() == {"baseline", "tokens"} and config.baseline_steps() == ["eval_bf16"]
    metrics, _ = _run(Config(**QUICK), upstream, tmp_path / "first")  # the same model and data give the same perplexity
    ppl = metrics["valid_perplexity"]
    inputs = {"model": upstream["model"], "tokens": upstream["tokens"]}
    ctx = StepContext("evaluate", tracker=NullTracker())
    (tmp_path / "close").mkdir()
    passed = run(config, inputs | {"baseline": _baseline(tmp_path, "eval_bf16", {"valid_perplexity": ppl / 1.02})},
                 tmp_path / "close", ctx)
    assert passed["valid_perplexity"] == pytest.approx(ppl)
    (tmp_path / "far").mkdir()
    bound = ppl / 1.05 * 1.03
    with pytest.raises(GateFailed, match=rf"gate 'valid_perplexity <= 1.03 \* eval_bf16.valid_perplexity' failed: "
                                         rf"valid_perplexity = {ppl:.6g} > {bound:.6g}"):
        run(config, inputs | {"baseline": _baseline(tmp_path, "eval_bf16", {"valid_perplexity": ppl / 1.05})},
            tmp_path / "far", ctx)
    assert list((tmp_path / "far").iterdir()) == []
    (tmp_path / "other").mkdir()
    with pytest.raises(GateFailed, match="the metrics of step 'eval_bf16' are not available"):
        run(config, inputs | {"baseline": _baseline(tmp_path, "eval_fp8", {"valid_perplexity": ppl})}, tmp_path / "other", ctx)


@needs_bwrap
def test_benchmarks_on_the_tiny_model(upstream, tmp_path: Path):
    mc = tmp_path / "mc.jsonl"
    write_task_file(mc, "multiple_choice", [
        {"id": "m1", "question": "Which is a river?", "options": ["stone", "water"], "answer": "B"},
        {"id": "m2", "question": "Which opens?", "options": ["house", "book", "road"], "answer": "B"}])
    tools = tmp_path / "tools.jsonl"
    write_task_file(tools, "tool_call", [{"prompt": "Weather in Oslo?", "tools": [{"name": "weather"}],
                                          "calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]}])
    config = Config(**QUICK, multiple_choice_files=[str(mc)], generation={"max_new_tokens": 6, "temperature": 0.8},
                    benchmarks=[
                        BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic", size=2, samples=2,
                                        genselect=True),
                        BenchmarkConfig(name="humaneval", source="humaneval", limit=2),
                        BenchmarkConfig(name="tools", source="file", task=str(tools)),
                    ])
    metrics, ctx = _run(config, upstream, tmp_path / "out")
    # a random tiny model solves nothing, and says nothing parseable: every answer is counted, none crashes
    assert metrics["arith_pass@1"] == 0.0 and metrics["arith_pass@2"] == 0.0 and metrics["arith_maj@2"] == 0.0
    assert metrics["arith_genselect@2"] == 0.0 and metrics["arith_items"] == 2
    assert metrics["humaneval_pass@1"] == 0.0 and metrics["humaneval_items"] == 2
    assert metrics["humaneval_unanswered"] == 2  # both prompts are longer than the tiny model's 256-token context
    assert metrics["tools_pass@1"] == 0.0 and metrics["tools_malformed"] == 1
    assert 0.0 <= metrics["mc_acc"] <= 1.0 and "mc_acc_norm_stderr" in metrics
    assert all(f"{name}_stderr" in metrics for name in ("arith_pass@1", "humaneval_pass@1", "valid_perplexity"))
    logged = {d["name"]: d for d in ctx.tracker.datasets}
    assert logged["humaneval"]["profile"]["items"] == 2 and logged["humaneval"]["profile"]["version"] == "1.0.3"
    assert logged["arith"]["uri"].startswith("reasoning-gym:basic_arithmetic") and logged["mc"]["digest"].startswith("sha256:")
    assert len((tmp_path / "out" / "benchmarks.jsonl").read_text().splitlines()) == 5
    table = (tmp_path / "out" / "eval_table.md").read_text()
    # model x benchmark, each figure with its error bar
    assert f"| {upstream['model'].uri} | " in table and "0.0000 ± 0.0000" in table
    assert "| model | arith_genselect@2 | arith_maj@2 | arith_pass@1 |" in table


class Scripted:
    """A stand-in generator that returns set replies: the way to put exactly these malformed outputs in."""

    model_id = "scripted"

    def __init__(self, replies):
        self.replies = replies

    def generate(self, prompts, params):
        return [self.replies[i % len(self.replies)] for i in range(len(prompts))]


@needs_bwrap
def test_malformed_output_is_scored_wrong_and_counted(tmp_path: Path):
    tools = tmp_path / "tools.jsonl"
    write_task_file(tools, "tool_call", [{"prompt": "p", "tools": [], "calls": [{"name": "f", "arguments": {}}]}] * 2)
    params = GenerationParams(max_new_tokens=8)
    sandbox = SandboxConfig(timeout_s=10)
    with MathVerifier(workers=1, timeout_s=10) as verifier:
        math = run_benchmark(BenchmarkConfig(name="m", source="procedural", task="basic_arithmetic", size=3),
                             Scripted(["", "\\boxed{\\frac{1}{}", "no answer at all"]), params, sandbox, verifier)
        code = run_benchmark(BenchmarkConfig(name="c", source="humaneval", limit=2),
                             Scripted(["    return (", "\tdef :"]), params, sandbox, verifier)
        tool = run_benchmark(BenchmarkConfig(name="t", source="file", task=str(tools)),
                             Scripted(["not json", "<think>x</think><tool_call>{oops</tool_call>"]), params, sandbox,
                             verifier)
    assert (math.metrics["m_pass@1"], math.metrics["m_malformed"]) == (0.0, 3.0)
    assert (code.metrics["c_pass@1"], code.metrics["c_malformed"]) == (0.0, 2.0)
    assert (tool.metrics["t_pass@1"], tool.metrics["t_malformed"]) == (0.0, 2.0)
