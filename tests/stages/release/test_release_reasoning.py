"""The post-trained release's card reports held-out accuracy per reasoning mode with error bars for every evaluation of
the lineage (base, after SFT), the think-block rates and the budget curve; model-index has one result per benchmark
and mode."""

from __future__ import annotations

import json

import pytest
import yaml

from factory.chat.records import Prompt
from factory.stage import Artifact, StepContext
from factory.stages import evaluate, sft
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.stages.release import Config
from factory.stages.release.model_card import model_card
from factory.tasks.table import format_metric
from tests.builders import addition_heldout, additions, conversations, manifest, stage_output

QUICK = {"perplexity": False, "tasks": [], "prompts": [], "generator": {"batch_size": 32},
         "generation": {"max_new_tokens": 24}, "benchmarks": [BenchmarkConfig(name="sums", source="heldout")]}


@pytest.fixture(scope="module")
def lineage(chat_checkpoint, tmp_path_factory):
    """The base model evaluated, SFT on additions, the SFT model evaluated with its budgets against the base's."""
    root = tmp_path_factory.mktemp("reasoning_card")
    train = additions(150)
    seen = [Prompt(id=f"seen-{i}", task="addition", verifier="math", answer=c.answer, messages=c.messages[1:2])
            for i, c in enumerate(train[:24:2])]
    data = conversations(root / "data", train, heldout=[*seen, *addition_heldout(4)])
    base_eval = stage_output("evaluate", evaluate.Config(**QUICK), {"model": chat_checkpoint, "data": data},
                             root / "eval_base", step="eval_base")
    out = root / "sft"
    out.mkdir()
    config = sft.Config(steps=60, micro_batch_size=8, lr=3e-3, seq_len=128, checkpoint_interval=0, log_interval=10)
    sft.run(config, {"model": chat_checkpoint, "data": data}, out, StepContext("sft"))
    tuned = Artifact(out, manifest("sft", "checkpoint", inputs={"model": chat_checkpoint, "data": data}))
    final = stage_output("evaluate", evaluate.Config(**QUICK, budgets=[0, 4]),
                         {"model": tuned, "data": data, "baseline": base_eval}, root / "evaluate", step="evaluate")
    # a released evaluation without the chat benchmark, gated against the one with it (examples/posttrain.yaml's shape)
    plain = stage_output("evaluate", evaluate.Config(perplexity=False, tasks=[], prompts=[]),
                         {"model": tuned, "baseline": final}, root / "evaluate_plain", step="evaluate_plain")
    return tuned, final, plain


def card_of(tuned, released, tokens) -> str:
    evaluation = json.loads((released.path / "eval.json").read_text())
    model_config = json.loads((tuned.path / "model" / "config.json").read_text())
    return model_card(Config(model_name="tiny-reasoner"), tuned, tokens, released, evaluation, model_config, chat=True)


def test_card_reports_accuracy_per_mode_along_the_lineage_with_think_rates_and_the_budget_curve(lineage, upstream):
    tuned, final, _ = lineage
    evaluation = json.loads((final.path / "eval.json").read_text())
    card = card_of(tuned, final, upstream["tokens"])
    section = card.split("## Reasoning evaluation\n", 1)[1].split("\n## ", 1)[0]
    m = evaluation["all_metrics"]
    base = final.manifest["lineage"]  # the base evaluation is in the lineage (the baseline input)
    assert any(a["stage"] == "eval_base" for a in base)
    rows = [line for line in section.splitlines() if line.startswith(("| eval_base", "| evaluate "))]
    # base then SFT, each in both modes, with its error bar; the SFT model thinks with `on` and not with `off`
    assert [r.split(" | ")[0] for r in rows] == ["| eval_base"] * 2 + ["| evaluate (this release's)"] * 2
    on = next(r for r in rows if r.startswith("| evaluate") and "reasoning on" in r)
    assert f"| {format_metric(m['sums_on_pass@1'])} ± {format_metric(m['sums_on_pass@1_stderr'])} |" in on
    assert "| 100% | 0% | 0% |" in on  # think closed, malformed, truncated
    off = next(r for r in rows if r.startswith("| evaluate") and "reasoning off" in r)
    assert "| 0% | 0% | 0% |" in off
    assert "- `sums` (evaluate): chat template, prompt config `generic`, runs `on`, `off`, `on_budget0`, `on_budget4`." \
        in section
    assert "- `sums` (eval_base): chat template, prompt config `generic`, runs `on`, `off`." in section
    # said plainly: this SFT model scores no better than its base on these items
    assert "- `sums`, reasoning on: 0 against 0 at eval_base (+0.000 ± 0.000): **not measurably better**" in section
    curve = [line for line in section.split("Accuracy against thinking budget", 1)[1].splitlines() if line.startswith("| sums")]
    assert [r.split(" | ")[1] for r in curve] == ["0", "4", "none"]

    front = yaml.safe_load(card.split("---\n", 2)[1])
    results = front["model-index"][0]["results"]
    assert [r["task"]["name"] for r in results] == ["heldout benchmark, reasoning on", "heldout benchmark, reasoning off"]
    on_metrics = {e["type"]: e["value"] for e in results[0]["metrics"]}
    assert on_metrics == {"pass@1": m["sums_on_pass@1"], "pass@1_stderr": m["sums_on_pass@1_stderr"]}


def test_figures_of_the_released_model_come_from_the_evaluation_it_was_gated_against(lineage, upstream):
    tuned, final, plain = lineage
    card = card_of(tuned, plain, upstream["tokens"])
    own = card_of(tuned, final, upstream["tokens"])
    section = card.split("## Reasoning evaluation\n", 1)[1].split("\n## ", 1)[0]
    assert "Accuracy against thinking budget of the released model (evaluation evaluate;" in section
    assert section.split("Accuracy against", 1)[1] == own.split("Accuracy against", 1)[1].split("\n## ", 1)[0]
    results = yaml.safe_load(card.split("---\n", 2)[1]).get("model-index", [{}])[0].get("results")
    assert results == yaml.safe_load(own.split("---\n", 2)[1])["model-index"][0]["results"]
