"""Our likelihood scores equal lm-evaluation-harness's on the same tiny model and items: the factory's own
multiple-choice files (its prompt, which lm-eval is given too), and lm-eval task files of someone else's making run
through the evaluate stage (their prompts, few-shot examples, description, delimiters; multiple choice and
loglikelihood).

lm-eval runs offline: its task YAML points at a local JSONL file, and its HFLM loads the tiny checkpoint and
tokenizer from their folders (tests/stages/evaluate/lm_eval_reference.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from factory.stage import StepContext
from factory.stages.evaluate import Config, run
from factory.stages.evaluate.likelihood import score_multiple_choice
from factory.tasks.files import MultipleChoiceItem
from tests.builders import heldout_docs, lm_eval_task
from tests.stages.evaluate.lm_eval_reference import lm_eval_scores

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a test extra (pip install lm-eval)")

WORDS = "river city market morning light water stone bridge garden teacher book road house village".split()


def items(n: int = 12) -> list[MultipleChoiceItem]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        options = [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(rng.randint(2, 4))]
        out.append(MultipleChoiceItem(id=f"q{i}", question=" ".join(rng.sample(WORDS, 6)) + "?",
                                      options=options, answer="ABCD"[rng.randrange(len(options))]))
    return out


def test_acc_and_acc_norm_equal_lm_eval(upstream, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, tokenizer_dir = upstream["model"].path / "model", upstream["tokens"].path / "tokenizer"
    mc = items()
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"question": it.question, "options": it.options,
                                        "gold": ord(it.answer) - ord("A")}) + "\n" for it in mc))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "factory_mc.yaml").write_text(
        "task: factory_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{options}}"\ndoc_to_target: gold\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    lm = HFLM(pretrained=str(model_dir), tokenizer=str(tokenizer_dir), device="cpu", batch_size=4)
    result = simple_evaluate(model=lm, tasks=["factory_mc"], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                             log_samples=True)
    theirs = result["results"]["factory_mc"]
    their_lls = [[float(r[0]) for r in sample["filtered_resps"]]
                 for sample in sorted(result["samples"]["factory_mc"], key=lambda s: s["doc_id"])]

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    acc, acc_norm, our_lls = score_multiple_choice(model, tokenizer, mc)
    print(f"acc {acc.value:.4f} (lm-eval {theirs['acc,none']:.4f}), acc_norm {acc_norm.value:.4f} "
          f"(lm-eval {theirs['acc_norm,none']:.4f}) on {len(mc)} items")
    assert acc.value == theirs["acc,none"] and acc_norm.value == theirs["acc_norm,none"]
    assert acc.stderr == pytest.approx(theirs["acc_stderr,none"])
    assert [len(row) for row in our_lls] == [len(row) for row in their_lls]
    assert sum(our_lls, []) == pytest.approx(sum(their_lls, []), abs=1e-5)


def heldout_tasks(folder: Path) -> list[Path]:
    """The held-out-style task (prompt `{{question}}`), and the same docs under few-shot examples from a train split
    with a description and other delimiters, under the first examples of the test split itself, and as a
    loglikelihood task (the right choice as the target)."""
    test, train = heldout_docs(20, seed=0), heldout_docs(8, seed=1)
    return [
        lm_eval_task(folder, "heldout_mc", {"test": test}),
        lm_eval_task(folder, "heldout_fewshot", {"test": test, "train": train}, num_fewshot=2, fewshot_split="train",
                     description="Answer the question.\n\n", doc_to_text="Q: {{question}}\nA:",
                     doc_to_choice="{{choices}}", doc_to_target="{{answer}}", fewshot_delimiter="\n###\n"),
        lm_eval_task(folder, "heldout_first_n", {"test": test}, num_fewshot=1, fewshot_config={"sampler": "first_n"},
                     doc_to_target="{{choices[answer]}}", target_delimiter=": "),
        lm_eval_task(folder, "heldout_loglik", {"test": test}, output_type="loglikelihood", doc_to_choice=None,
                     metric_list=None, doc_to_target="{{' ' + choices[answer]}}"),
    ]


def test_lm_eval_tasks_through_the_evaluate_stage_score_as_lm_eval(upstream, tmp_path: Path):
    tasks = heldout_tasks(tmp_path / "tasks")
    model_dir = upstream["model"].path / "model"  # the model with its own tokenizer: no tokens input
    theirs = lm_eval_scores(model_dir, model_dir, tasks)

    out = tmp_path / "out"
    out.mkdir()
    config = Config(perplexity=False, tasks=[], prompts=[], lm_eval_tasks=[str(t) for t in tasks], batch_size=3)
    metrics = run(config, {"model": upstream["model"]}, out, StepContext("evaluate"))
    report = json.loads((out / "eval.json").read_text())
    records = [json.loads(line) for line in (out / "lm_eval_items.jsonl").read_text().splitlines()]
    for name, their in theirs.items():
        mine = [r for r in records if r["task"] == name]
        assert [r["context"] for r in mine] == their["contexts"], name
        ours_lls = [ll for r in mine for ll in r["loglikelihoods"]]
        their_lls = [ll for row in their["loglikelihoods"] for ll in row]
        assert len(ours_lls) == len(their_lls) and max(abs(a - b) for a, b in zip(ours_lls, their_lls)) < 1e-5, name
        summary = report["lm_eval"][name]
        assert summary["items"] == 20 and summary["truncated"] == 0
        for metric in ("acc", "acc_norm"):
            if f"{metric},none" in their:
                print(f"{name} {metric} {metrics[f'{name}_{metric}']:.4f} (lm-eval {their[f'{metric},none']:.4f})")
                assert metrics[f"{name}_{metric}"] == summary["metrics"][metric] == their[f"{metric},none"], name
                assert metrics[f"{name}_{metric}_stderr"] == pytest.approx(their[f"{metric}_stderr,none"], rel=1e-9)
    # perplexity: the same figure; its standard error is the delta method's, where lm-eval bootstraps
    assert metrics["heldout_loglik_perplexity"] == pytest.approx(theirs["heldout_loglik"]["perplexity,none"], rel=1e-5)
    assert metrics.keys() >= {"heldout_mc_acc", "heldout_mc_acc_norm_stderr", "heldout_loglik_perplexity_stderr"}
    assert report["metrics"] == {} and report["tokens"] is None  # no held-out text was asked for
    assert "heldout_mc_acc_norm" in (out / "eval_table.md").read_text()
