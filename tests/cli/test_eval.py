"""`factory eval MODEL_DIR --task ...`: any model folder evaluated without a spec. On a smoke-style release (the
release stage's folder of the tiny preset) with the held-out-style lm-eval task it gives lm-eval's acc and acc_norm;
on a checkpoint with a tokens artifact, the evaluate stage's perplexity; mistakes are one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.eval import evaluate_folder
from factory.errors import UserError
from factory.stages import evaluate, release
from factory.tasks.files import MultipleChoiceItem, write_task_file
from tests.builders import heldout_docs, lm_eval_task, stage_output

ROOT = Path(__file__).resolve().parents[2]


def factory(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300)


@pytest.fixture(scope="module")
def released(upstream, tmp_path_factory):
    """A smoke-style release: the release stage's folder of the session's tiny checkpoint, with its evaluation."""
    root = tmp_path_factory.mktemp("eval_cli")
    inputs = {"model": upstream["model"], "tokens": upstream["tokens"]}
    evaluation = stage_output("evaluate", evaluate.Config(seq_len=32, max_batches=2, tasks=[], prompts=[]), inputs,
                              root / "evaluation")
    return stage_output("release", release.Config(model_name="tiny-smoke"), {**inputs, "evaluation": evaluation},
                        root / "release")


def test_eval_of_a_release_gives_lm_evals_acc_and_acc_norm(released, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is a test extra (pip install lm-eval)")
    from tests.stages.evaluate.lm_eval_reference import lm_eval_scores

    task = lm_eval_task(tmp_path / "tasks")  # the held-out style: prompt `{{question}}`, choices, answer index
    theirs = lm_eval_scores(released.path, released.path, [task])["heldout_mc"]

    r = factory("eval", str(released.path), "--task", str(task), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    metrics = json.loads((tmp_path / "out" / "eval.json").read_text())["all_metrics"]
    print(f"factory eval: acc {metrics['heldout_mc_acc']:.4f} acc_norm {metrics['heldout_mc_acc_norm']:.4f}; "
          f"lm-eval: acc {theirs['acc,none']:.4f} acc_norm {theirs['acc_norm,none']:.4f}")
    assert metrics["heldout_mc_acc"] == theirs["acc,none"] and metrics["heldout_mc_acc_norm"] == theirs["acc_norm,none"]
    assert metrics["heldout_mc_acc_stderr"] == pytest.approx(theirs["acc_stderr,none"], rel=1e-9)
    assert metrics["heldout_mc_acc_norm_stderr"] == pytest.approx(theirs["acc_norm_stderr,none"], rel=1e-9)
    items = [json.loads(line) for line in (tmp_path / "out" / "lm_eval_items.jsonl").read_text().splitlines()]
    ours = [ll for item in items for ll in item["loglikelihoods"]]
    assert ours == pytest.approx([ll for doc in theirs["loglikelihoods"] for ll in doc], abs=1e-5)
    assert printed["metrics"] == metrics and printed["out"] == (tmp_path / "out").as_uri()

    # the folder describes itself: which model (the release's own fingerprint), which task and docs, which code
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stage"] == "eval" and manifest["kind"] == "evaluation"
    assert manifest["inputs"]["model"]["fingerprint"] == released.fingerprint
    assert [s["uri"] for s in manifest["sources"]] == [str(task), str(tmp_path / "tasks" / "heldout_mc_test.jsonl")]
    assert {f["path"] for f in manifest["files"]} >= {"eval.json", "eval_table.md", "lm_eval_items.jsonl", "samples.jsonl"}
    assert "valid_perplexity" not in metrics  # no --tokens: no held-out text to measure it on

    # a second run into the same folder replaces it with the same result
    evaluate_folder(released.path, [task], out=tmp_path / "out")
    again = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert again["fingerprint"] == manifest["fingerprint"] and again["metrics"] == manifest["metrics"]


def test_eval_of_a_checkpoint_with_tokens_measures_the_stages_perplexity(upstream, tmp_path):
    docs = heldout_docs(6)
    items = [MultipleChoiceItem(id=str(i), question=d["question"], options=d["choices"], answer="ABCD"[d["answer"]])
             for i, d in enumerate(docs)]
    write_task_file(tmp_path / "mc.jsonl", "multiple_choice", items)
    settings = {"seq_len": 32, "max_batches": 2, "prompts": []}
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings))
    manifest = evaluate_folder(upstream["model"].path / "model", [tmp_path / "mc.jsonl"], out=tmp_path / "out",
                               tokens=upstream["tokens"].path, config_path=tmp_path / "settings.yaml")
    config = evaluate.Config(**settings, tasks=[], multiple_choice_files=[str(tmp_path / "mc.jsonl")])
    stage = stage_output("evaluate", config, {"model": upstream["model"], "tokens": upstream["tokens"]}, tmp_path / "stage")
    assert manifest["metrics"] == pytest.approx(stage.manifest["metrics"], rel=1e-6)
    assert manifest["metrics"]["valid_perplexity"] > 0 and "mc_acc_norm" in manifest["metrics"]
    # the checkpoint's model/ is its artifact's: its manifest names it
    assert manifest["inputs"]["model"]["fingerprint"] == upstream["model"].fingerprint
    assert manifest["inputs"]["tokens"]["fingerprint"] == upstream["tokens"].fingerprint


def test_mistakes_are_one_line(released, upstream, tmp_path):
    task = lm_eval_task(tmp_path / "tasks")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    cases = [
        ((tmp_path, [task]), {}, "no config.json (nor model/config.json); give a model folder"),
        ((released.path, [task]), {"out": tmp_path / "taken"}, "is not empty and is not a previous `factory eval` output"),
        ((released.path, [lm_eval_task(tmp_path / "bad", "gen", output_type="generate_until")]), {},
         "output_type: Input should be 'multiple_choice' or 'loglikelihood'"),
        ((released.path, []), {}, "nothing to evaluate"),
        ((released.path, [task]), {"config_path": tmp_path / "none.yaml"}, "--config"),
    ]
    (tmp_path / "ppl.yaml").write_text("perplexity: true\n")
    cases.append(((released.path, [task]), {"config_path": tmp_path / "ppl.yaml"}, "perplexity needs held-out text"))
    for args, kwargs, message in cases:
        with pytest.raises(UserError) as raised:
            evaluate_folder(*args, **{"out": tmp_path / "o", **kwargs})
        assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine" and not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    r = factory("eval", str(tmp_path), "--task", str(task))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: no config.json")
