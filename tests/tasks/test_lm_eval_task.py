"""lm-eval task files: what is read, what is refused with one line, and the requests rendered exactly as lm-eval
renders them (its own task classes build the same contexts and continuations, few-shot examples included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from factory.errors import InputError, SpecError
from factory.tasks.lm_eval_task import INVALID_LABEL, build_requests, doc_scores, read_lm_eval_task, task_data_files
from tests.builders import heldout_docs, lm_eval_task

# docs of every shape the renderer meets: a missing key (None), a string answer, accents (characters != bytes)
ODD_DOCS = [
    {"question": "Où est le pont?", "choices": ["près", "loin du café"], "answer": 0, "label": "près", "hint": "x"},
    {"question": "Which road?", "choices": ["old road", "new road", "none"], "answer": 2, "label": "none"},
    {"question": "A  spaced   question ", "choices": ["a", "b"], "answer": 1, "label": "b"},
]


def _requests_of_lm_eval(task_files: list[Path]) -> dict[str, list[list[tuple[str, str]]]]:
    """lm-eval's own requests of each task, per doc: [(context, continuation), ...], at its default few-shot seed."""
    pytest.importorskip("lm_eval", reason="lm-eval is a test extra (pip install lm-eval)")
    import os

    os.environ["HF_DATASETS_OFFLINE"] = "1"
    from lm_eval.tasks import TaskManager

    folder = task_files[0].parent
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    out = {}
    for name, task in manager.load_task_or_group([Path(f).stem for f in task_files]).items():
        task.set_config("num_fewshot", task.get_config("num_fewshot") or 0)
        task.set_fewshot_seed(1234)
        task.build_all_requests()
        by_doc: dict[int, list[tuple[str, str]]] = {}
        for instance in task.instances:
            by_doc.setdefault(instance.doc_id, []).append(tuple(instance.arguments))
        out[str(name)] = [by_doc[i] for i in sorted(by_doc)]
    return out


def test_requests_are_the_ones_lm_eval_builds(tmp_path):
    docs = heldout_docs(12, seed=3)
    tasks = [
        lm_eval_task(tmp_path, "plain"),  # the held-out style: the question alone
        lm_eval_task(tmp_path, "shots_from_test", num_fewshot=3, description="Answer.\n\n",
                     doc_to_text="Q: {{question}}\nA:", doc_to_choice="{{choices}}", doc_to_target="{{answer}}"),
        lm_eval_task(tmp_path, "shots_from_train", {"test": docs, "train": heldout_docs(6, seed=4)}, num_fewshot=2,
                     fewshot_split="train", target_delimiter=": ", fewshot_delimiter="\n###\n",
                     doc_to_text="{{question | regex_replace('\\\\?$', '')}}"),
        lm_eval_task(tmp_path, "shots_excluding_the_doc", {"test": docs}, num_fewshot=2, fewshot_split="test"),
        lm_eval_task(tmp_path, "first_n", {"validation": docs}, test_split=None, validation_split="validation",
                     num_fewshot=2, fewshot_config={"sampler": "first_n"}),
        lm_eval_task(tmp_path, "odd", {"test": ODD_DOCS}, doc_to_target="label", description="{{hint}}",
                     doc_to_choice="{{choices}}", num_fewshot=1),
        lm_eval_task(tmp_path, "fixed_choices", {"test": ODD_DOCS}, doc_to_choice=["yes", "no"], doc_to_target=1),
        lm_eval_task(tmp_path, "labelled_choices", {"test": ODD_DOCS}, doc_to_choice={"A": "alpha", "B": "beta"},
                     doc_to_target="{{answer % 2}}"),
        lm_eval_task(tmp_path, "loglik", {"test": docs}, output_type="loglikelihood", doc_to_choice=None,
                     metric_list=None, doc_to_target="{{' ' + choices[answer]}}", num_fewshot=2),
    ]
    theirs = _requests_of_lm_eval(tasks)
    for file in tasks:
        task = read_lm_eval_task(file)
        ours = [[(r.context, c) for c in r.continuations] for r in build_requests(task)]
        assert ours == theirs[task.name], task.name


def test_relative_data_files_are_read_from_the_task_files_folder_and_includes_merge(tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in heldout_docs(3)))
    (tmp_path / "tasks" / "_base.yaml").write_text(yaml.safe_dump({
        "dataset_path": "json", "dataset_kwargs": {"data_files": "docs.jsonl"}, "test_split": "train",
        "output_type": "multiple_choice", "doc_to_text": "base", "doc_to_choice": "choices", "doc_to_target": "answer"}))
    (tmp_path / "tasks" / "mine.yaml").write_text("include: _base.yaml\ntask: mine\ndoc_to_text: '{{question}}'\n")
    monkeypatch.chdir(tmp_path)  # the working folder is not the task's
    task = read_lm_eval_task(Path("tasks/mine.yaml"))
    assert task.definition.doc_to_text == "{{question}}" and task.definition.doc_to_choice == "choices"
    assert task.files() == [Path("tasks/docs.jsonl")]
    assert task_data_files("tasks/mine.yaml") == ["tasks/docs.jsonl"]
    assert [r.context for r in build_requests(task)] == [d["question"] for d in heldout_docs(3)]


@pytest.mark.parametrize(("keys", "message"), [
    ({"generation_kwargs": {"until": ["\n"]}}, "key 'generation_kwargs' is not supported"),
    ({"output_type": "generate_until"}, "output_type: Input should be 'multiple_choice' or 'loglikelihood'"),
    ({"metric_list": [{"metric": "exact_match"}]}, "metric 'exact_match' is not computed here for multiple_choice"),
    ({"metric_list": [{"metric": "acc", "aggregation": "median"}]}, "acc: aggregation 'median' is not supported"),
    ({"dataset_path": "cais/mmlu"}, "dataset_path: Input should be 'json'"),
    ({"doc_to_choice": None}, "output_type multiple_choice needs doc_to_choice"),
    ({"test_split": None}, "needs test_split or validation_split"),
    ({"test_split": "validation"}, "split 'validation' is named but data_files has no such split"),
    ({"num_fewshot": 1, "fewshot_split": "train"}, "split 'train' is named but data_files has no such split"),
    ({"fewshot_config": {"sampler": "balanced"}}, "fewshot_config.sampler: Input should be 'default' or 'first_n'"),
    ({"task": "has space"}, "task: String should match pattern"),
])
def test_what_it_cannot_honour_is_refused_in_one_line(tmp_path, keys, message):
    path = lm_eval_task(tmp_path, **keys)
    with pytest.raises(SpecError, match="^" + str(path).replace(".", r"\.") + ": ") as raised:
        read_lm_eval_task(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_python_groups_and_missing_files_are_refused(tmp_path):
    path = lm_eval_task(tmp_path)
    path.write_text(path.read_text() + "process_docs: !function utils.process_docs\n")
    with pytest.raises(SpecError, match=r"process_docs: !function \(Python named by the task\) is not supported"):
        read_lm_eval_task(path)
    path.write_text("group: mine\ntask: [a, b]\n")
    with pytest.raises(SpecError, match="a group of tasks"):
        read_lm_eval_task(path)
    path = lm_eval_task(tmp_path, "gone")
    (tmp_path / "gone_test.jsonl").unlink()
    with pytest.raises(InputError, match="gone_test.jsonl does not exist"):
        read_lm_eval_task(path)
    with pytest.raises(InputError, match="does not exist"):
        read_lm_eval_task(tmp_path / "nope.yaml")
    assert task_data_files(str(tmp_path / "nope.yaml")) == []


def test_doc_scores_follow_lm_eval(tmp_path):
    task = read_lm_eval_task(lm_eval_task(tmp_path, "odd", {"test": ODD_DOCS}, doc_to_target="label"))
    first = build_requests(task)[0]
    assert first.gold == 0 and first.choices == ["près", "loin du café"]
    # acc_norm divides by characters, not bytes or tokens: "près" is 4 characters (5 bytes), "loin du café" 12 (13)
    assert doc_scores(task, first, [(-4.4, False), (-12.6, False)]) == {"acc": 1.0, "acc_norm": 0.0}
    assert doc_scores(task, first, [(-4.0, False), (-12.0, False)]) == {"acc": 1.0, "acc_norm": 1.0}  # ties: the first
    # a label no choice holds scores 0 whatever the model says; several right answers: any of them
    missing = read_lm_eval_task(lm_eval_task(tmp_path, "missing", {"test": ODD_DOCS}, doc_to_target="{{answer + 5}}"))
    assert build_requests(missing)[0].gold == INVALID_LABEL
    assert doc_scores(missing, build_requests(missing)[0], [(-1.0, True), (-9.0, False)]) == {"acc": 0.0, "acc_norm": 0.0}
    several = read_lm_eval_task(lm_eval_task(tmp_path, "several", {"test": ODD_DOCS}, doc_to_target="{{[0, answer]}}",
                                             metric_list=[{"metric": "acc_norm"}]))
    second = build_requests(several)[1]
    assert second.gold == [0, 2]
    assert doc_scores(several, second, [(-9.0, False), (-9.0, False), (-1.0, False)]) == {"acc_norm": 1.0}
