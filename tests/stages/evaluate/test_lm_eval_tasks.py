"""The evaluate stage's lm-eval task files and its optional perplexity: refused at spec load when they cannot be
honoured, their docs in the fingerprint and in curate's decontamination, a step without tokens when perplexity is off,
and the factory's own multiple-choice files still scored after its default prompt."""

from __future__ import annotations

import json

import pydantic
import pytest
import yaml

from factory.errors import InputError, SpecError
from factory.kinds import KINDS
from factory.sources import input_identity, source_digests
from factory.spec import load_spec
from factory.stage import NullTracker, StepContext
from factory.stages.evaluate import Config, run
from factory.stages.evaluate.config import evaluated_files
from factory.stages.evaluate.likelihood import mc_context
from factory.tasks.files import MultipleChoiceItem, write_task_file
from tests.builders import heldout_docs, lm_eval_task
from tests.spine import small_spec_data

QUICK = {"tasks": [], "prompts": [], "batch_size": 4}


def test_perplexity_off_needs_no_tokens_and_reports_no_held_out_figures(upstream, tmp_path):
    task = lm_eval_task(tmp_path / "tasks", docs={"test": heldout_docs(6)})
    config = Config(perplexity=False, lm_eval_tasks=[str(task)], **QUICK)
    evaluate = KINDS["evaluate"]
    assert evaluate.required(config) == ["model"] and evaluate.required(Config()) == ["model", "tokens"]
    (tmp_path / "out").mkdir()
    ctx = StepContext("evaluate", tracker=NullTracker())
    metrics = run(config, {"model": upstream["model"]}, tmp_path / "out", ctx)
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["metrics"] == {} and report["windows"] == 0 and report["tokens"] is None
    assert set(metrics) == {"heldout_mc_acc", "heldout_mc_acc_stderr", "heldout_mc_acc_norm", "heldout_mc_acc_norm_stderr"}
    assert report["lm_eval"]["heldout_mc"]["items"] == 6 and report["lm_eval"]["heldout_mc"]["max_length"] == 256
    items = [json.loads(line) for line in (tmp_path / "out" / "lm_eval_items.jsonl").read_text().splitlines()]
    assert [r["context"] for r in items] == [d["question"] for d in heldout_docs(6)]  # the task's prompt, not ours
    assert [len(r["loglikelihoods"]) for r in items] == [len(d["choices"]) for d in heldout_docs(6)]
    assert ctx.tracker.datasets[0]["name"] == "heldout_mc" and ctx.tracker.datasets[0]["profile"]["items"] == 6
    assert not (tmp_path / "out" / "eval_table.md").read_text().startswith("| metric | value |")  # no empty table


def test_the_same_docs_score_alike_as_a_factory_file_and_as_an_lm_eval_task_given_the_factorys_prompt(upstream, tmp_path):
    docs = heldout_docs(8)
    items = [MultipleChoiceItem(id=str(i), question=d["question"], options=d["choices"], answer="ABCD"[d["answer"]])
             for i, d in enumerate(docs)]
    write_task_file(tmp_path / "mine.jsonl", "multiple_choice", items)
    task = lm_eval_task(tmp_path / "tasks", "theirs", {"test": docs}, doc_to_text="Question: {{question}}\nAnswer:")
    assert mc_context(items[0]) == f"Question: {docs[0]['question']}\nAnswer:"  # the factory's default prompt
    (tmp_path / "out").mkdir()
    config = Config(perplexity=False, multiple_choice_files=[str(tmp_path / "mine.jsonl")], lm_eval_tasks=[str(task)], **QUICK)
    metrics = run(config, {"model": upstream["model"]}, tmp_path / "out", StepContext("evaluate"))
    for metric in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr"):
        assert metrics[f"mine_{metric}"] == metrics[f"theirs_{metric}"]


def test_a_task_file_it_cannot_honour_is_refused_at_load_in_one_line(tmp_path):
    bad = lm_eval_task(tmp_path, "gen", output_type="generate_until")
    with pytest.raises(pydantic.ValidationError) as raised:
        Config(lm_eval_tasks=[str(bad)])
    assert raised.value.errors()[0]["msg"] == (f"Value error, {bad}: output_type: Input should be 'multiple_choice' or "
                                               "'loglikelihood'")
    with pytest.raises(pydantic.ValidationError, match="does not exist"):
        Config(lm_eval_tasks=[str(tmp_path / "nope.yaml")])
    task = lm_eval_task(tmp_path, "stdlib_cloze")  # the built-in set's name: both would key `stdlib_cloze_*`
    with pytest.raises(SpecError, match="is task 'stdlib_cloze', a name another evaluation set or benchmark"):
        Config(lm_eval_tasks=[str(task)])


def test_the_docs_are_raw_inputs_of_the_step(tmp_path):
    task = lm_eval_task(tmp_path, docs={"test": heldout_docs(4), "train": heldout_docs(3, seed=1)})
    config = Config(lm_eval_tasks=[str(task)])
    docs = [str(tmp_path / "heldout_mc_test.jsonl"), str(tmp_path / "heldout_mc_train.jsonl")]
    assert config.lm_eval_docs == docs
    before = source_digests("evaluate", config)
    assert [e["uri"] for e in before["lm_eval_docs"]] == docs and len(before["lm_eval_tasks"]) == 1
    (tmp_path / "heldout_mc_train.jsonl").write_text(json.dumps(heldout_docs(1, seed=9)[0]) + "\n")
    input_identity.cache_clear()  # identities are computed once per process, as a pipeline run plans once
    after = source_digests("evaluate", config)
    assert after["lm_eval_docs"][1] != before["lm_eval_docs"][1] and after["lm_eval_tasks"] == before["lm_eval_tasks"]
    # content hashing may name a docs file: it is one of the step's raw inputs
    assert Config(lm_eval_tasks=[str(task)], content_hash=[docs[0]]).content_hash == [docs[0]]


def test_every_curate_step_decontaminates_against_the_docs(tmp_path):
    task = lm_eval_task(tmp_path / "tasks", docs={"test": heldout_docs(4), "train": heldout_docs(3, seed=1)})
    docs = [str(tmp_path / "tasks" / "heldout_mc_test.jsonl"), str(tmp_path / "tasks" / "heldout_mc_train.jsonl")]
    assert evaluated_files({"lm_eval_tasks": [str(task), str(tmp_path / "gone.yaml"), 3]}) == docs
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(small_spec_data(tmp_path, evaluate={"lm_eval_tasks": [str(task)]})))
    curate = load_spec(spec).stage_config("curate")
    assert curate.decontamination_sets[-2:] == docs


def test_a_step_without_tokens_on_a_checkpoint_without_a_tokenizer_says_what_to_wire(upstream, tmp_path):
    from tests.builders import publish

    folder = tmp_path / "ckpt"
    (folder / "model").mkdir(parents=True)
    for f in (upstream["model"].path / "model").iterdir():
        if f.name in ("config.json", "model.safetensors", "generation_config.json"):
            (folder / "model" / f.name).symlink_to(f)
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="no tokenizer beside the model; wire a tokens input"):
        run(Config(perplexity=False, **QUICK), {"model": publish(folder, "pretrain", "checkpoint")}, tmp_path / "out",
            StepContext("evaluate"))
