"""Task files: declared types, the older cloze format, and the error budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.errors import InputError, SpecError
from factory.tasks import builtin_path, read_set
from factory.tasks.files import MathItem, MultipleChoiceItem, ToolCallItem, read_task_file, write_task_file
from factory.tasks.procedural import procedural
from factory.verify.math_answer import check


def lines(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_round_trip_of_each_type(tmp_path: Path):
    items = [MultipleChoiceItem(id="q1", question="Which is prime?", options=["4", "7"], answer="B")]
    write_task_file(tmp_path / "mc.jsonl", "multiple_choice", items, version="2")
    read = read_task_file(tmp_path / "mc.jsonl")
    assert (read.name, read.task_type, read.version, read.skipped) == ("mc", "multiple_choice", "2", 0)
    assert read.items == items and read.digest.startswith("sha256:")
    tools = lines(tmp_path / "tools.jsonl", {"task_type": "tool_call"},
                  {"prompt": "weather in Oslo", "tools": [{"name": "weather"}],
                   "calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]})
    item = read_task_file(tools).items[0]
    assert isinstance(item, ToolCallItem) and item.id == "tools-2" and item.calls[0].arguments == {"city": "Oslo"}


def test_a_file_without_declaration_is_cloze():
    read = read_task_file(builtin_path("stdlib_cloze"))
    assert read.task_type == "cloze" and len(read.items) == len(read_set(builtin_path("stdlib_cloze")))


def test_bad_items_within_the_budget_are_skipped_and_counted(tmp_path: Path):
    good = [{"problem": f"{i} + 1 = ?", "answer": str(i + 1)} for i in range(19)]
    path = lines(tmp_path / "m.jsonl", {"task_type": "math"}, *good, "{not json")
    read = read_task_file(path, error_budget=0.1)
    assert len(read.items) == 19 and read.skipped == 1 and isinstance(read.items[0], MathItem)


def test_past_the_budget_one_error_names_file_line_and_reason(tmp_path: Path):
    path = lines(tmp_path / "m.jsonl", {"task_type": "math"}, {"problem": "1 + 1", "answer": "2"},
                 {"problem": "2 + 2"}, "[1, 2]")
    with pytest.raises(InputError, match=r"m.jsonl, line 3: answer: Field required \(2 of 3 items malformed"):
        read_task_file(path, error_budget=0.5)
    mc = lines(tmp_path / "mc.jsonl", {"task_type": "multiple_choice"}, {"question": "q", "options": ["a", "b"], "answer": "C"})
    with pytest.raises(InputError, match="line 2: answer: Value error, answer 'C' names no option"):
        read_task_file(mc)
    with pytest.raises(InputError, match="line 1: bad declaration: task_type"):
        read_task_file(lines(tmp_path / "x.jsonl", {"task_type": "essay"}))


def test_procedural_items_are_seeded_and_checked_by_math_verify():
    first, again = procedural("basic_arithmetic", size=5, seed=3), procedural("basic_arithmetic", size=5, seed=3)
    assert first == again and first != procedural("basic_arithmetic", size=5, seed=4)
    item = first[0]
    assert check(item.answer, f"so \\boxed{{{item.answer}}}").correct
    assert not check(item.answer, f"so \\boxed{{{item.answer}1}}").correct
    with pytest.raises(SpecError, match="procedural task 'no_such_task'"):
        procedural("no_such_task", size=1, seed=0)


def test_builtin_task_files_read_whole_and_join_decontamination():
    from factory.tasks import builtin_eval_items, builtin_task_files, builtin_task_path
    from factory.verify.tool_calls import check_tool_calls

    assert builtin_task_files() == ["multiple_choice", "tool_calls"]
    tools = read_task_file(builtin_task_path("tool_calls"))
    mc = read_task_file(builtin_task_path("multiple_choice"))
    assert (tools.task_type, len(tools.items), tools.skipped) == ("tool_call", 12, 0)
    assert (mc.task_type, len(mc.items), mc.skipped) == ("multiple_choice", 12, 0)
    # each item's own calls, written as a model would, earn the reward
    for item in tools.items:
        reply = "<think>ok</think><tool_call>" + json.dumps([c.model_dump() for c in item.calls]) + "</tool_call>"
        assert check_tool_calls(reply, [c.model_dump() for c in item.calls]).reward == 1
    items = builtin_eval_items()
    texts = {text for _, text in items}
    assert tools.items[0].prompt in texts and mc.items[0].question in texts
    # HumanEval's problems are evaluated, so curate matches them too: a page quoting one is dropped
    from factory.curate.decontaminate import NgramIndex
    from factory.tasks import humaneval

    assert sum(name == "humaneval" for name, _ in items) == 164
    index = NgramIndex(items, n_gram=13, min_item_words=8)
    assert index.match("A blog post.\n" + humaneval()[0].prompt + "\nMy answer follows.") == "humaneval"
    assert index.match("def add(a, b):\n    return a + b  # a small helper for the tutorial on numbers") is None
    with pytest.raises(SpecError, match="built-in task file 'nope' does not exist"):
        builtin_task_path("nope")


def test_results_table_is_model_by_benchmark_with_error_bars():
    from factory.tasks.table import results_table

    lines = results_table({"base": {"arith": (0.25, 0.1), "mc": (0.5, 0.05)}, "sft": {"arith": (0.75, 0.1)}})
    assert lines[0] == "| model | arith | mc |"
    assert lines[2] == "| base | 0.2500 ± 0.1000 | 0.5000 ± 0.0500 |" and lines[3] == "| sft | 0.7500 ± 0.1000 | – |"
