"""Budget-control data (Nemotron Nano 2): the stage writes, beside the full traces, mode-on solutions cut at a sampled
thinking budget in the training model's tokens, closed the way the generator closes a budgeted reply, then answered;
deterministic from the seed, counted in stats.json, refused at spec load when it cannot be honoured."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from factory.artifacts import Conversations
from factory.chat.records import split_thinking
from factory.errors import SpecError
from factory.generate.params import GenerationParams, close_thinking
from factory.spec import parse_spec
from factory.stage import NullTracker, StepContext
from factory.stages.posttrain_data import Config, run
from factory.stages.posttrain_data.budget_control import BudgetCutter
from tests.builders.checkpoints import GPT2, checkpoint
from tests.builders.tokenizers import tokenizer

SUMS = {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"],
        "allow_parentheses": False, "allow_negation": False}
BRIDGE = "Time is up; the answer follows."


def ctx() -> StepContext:
    return StepContext("posttrain_data", tracker=NullTracker())


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A checkpoint whose chat tokenizer (trained on sums) counts the budgets."""
    texts = [f"<think>\n{a} + {b} = {a + b}\n{a + b} - 3 = {a + b - 3}\n</think>\n\nThe answer is \\boxed{{{a + b - 3}}}."
             for a in range(10) for b in range(10)]
    return checkpoint(tmp_path_factory.mktemp("student"), tokenizer("chat", texts, vocab_size=300), GPT2, step="sft")


def config(**budget) -> Config:
    return Config(procedural=[{"generator": "basic_arithmetic", "size": 24, "params": SUMS, "heldout_size": 4}],
                  budget_control={"fraction": 0.5, "budgets": [0, 3, 6, 9, 64], "bridge": BRIDGE, **budget})


def test_cut_copies_are_what_the_generator_writes_under_the_budget(tmp_path, student):
    metrics = run(config(), {"model": student}, tmp_path, ctx())
    art = Conversations(tmp_path, "data")
    train, stats = art.train(), art.stats()
    full = {c.id: c for c in train if "thinking_budget" not in c.meta}
    copies = [c for c in train if "thinking_budget" in c.meta]
    counts = stats.budget_control

    # 24 prompts x 2 modes verified; about half the 24 mode-on solutions drawn, each cut at a budget shorter than
    # its thinking (a 3-term trace is about 14 tokens: 64 never cuts, so no copy is uncut here)
    assert stats.kept == len(full) == 48 and len(copies) == counts["written"] == counts["drawn"] > 0
    assert 6 <= counts["written"] <= 18 and counts.get("uncut", 0) == 0
    assert sum(v for k, v in counts.items() if k.startswith("budget_")) == counts["written"] and "budget_64" not in counts
    assert metrics["budget_control_written"] == counts["written"] and metrics["kept"] == 48.0

    tok = AutoTokenizer.from_pretrained(student.path / "model")
    params = GenerationParams(reasoning="on", thinking_budget=1, bridge=BRIDGE)
    for copy in copies:
        budget, source = copy.meta["thinking_budget"], full[copy.meta["full_trace"]]
        assert copy.reasoning == "on" and copy.id == f"{source.id}-budget{budget}" and budget in (0, 3, 6, 9)
        assert copy.messages[:-1] == source.messages[:-1] and copy.answer == source.answer
        # the reply's first `budget` tokens, closed by the generator's own helper, then the full trace's answer
        ids = tok(source.reply, add_special_tokens=False)["input_ids"]
        head = tok.decode(ids[:budget], skip_special_tokens=False)
        assert "</think>" not in head
        _, final = split_thinking(source.reply)
        assert copy.reply == close_thinking(head, params) + final
        thinking, copy_final = split_thinking(copy.reply)
        assert thinking.endswith(BRIDGE) and copy_final == final and "\\boxed{" in final
    assert any(c.meta["thinking_budget"] == 0 for c in copies)  # budget 0: an empty think block, then the answer
    zero = next(c for c in copies if c.meta["thinking_budget"] == 0)
    assert zero.reply.startswith(f"<think>\n{BRIDGE}\n</think>\n\n")

    # deterministic from the seed alone: another batching gives the same file; another seed other draws
    again = tmp_path / "again"
    run(config().model_copy(update={"request_batch": 5}), {"model": student}, again, ctx())
    assert (again / "train.jsonl").read_bytes() == (tmp_path / "train.jsonl").read_bytes()
    other = tmp_path / "other"
    run(config(seed=1), {"model": student}, other, ctx())
    assert (other / "train.jsonl").read_bytes() != (tmp_path / "train.jsonl").read_bytes()


def test_a_budget_range_and_solutions_no_budget_cuts(tmp_path, student):
    tok = AutoTokenizer.from_pretrained(student.path / "model")
    full = config().model_copy(update={"budget_control": None})
    run(full, {}, tmp_path, ctx())
    kept = Conversations(tmp_path, "data").train()
    # a range whose every budget holds the whole think block: every drawn solution is counted uncut, none written
    copies, counts = BudgetCutter(config(budgets=None, budget_range=(100, 120), fraction=1.0).budget_control, tok).cut(kept)
    assert copies == [] and counts == {"drawn": 24, "uncut": 24}
    copies, counts = BudgetCutter(config(budgets=None, budget_range=(2, 4), fraction=1.0).budget_control, tok).cut(kept)
    assert counts["written"] == 24 and {c.meta["thinking_budget"] for c in copies} == {2, 3, 4}


def test_budget_control_is_refused_or_fingerprinted_at_spec_load(tmp_path, student):
    with pytest.raises(ValidationError, match="exactly one of budgets"):
        config(budget_range=(0, 8))
    with pytest.raises(ValidationError, match="budget_range"):
        config(budgets=None, budget_range=(8, 2))
    with pytest.raises(ValidationError, match="only mode-on solutions"):
        Config.model_validate({**config().model_dump(), "reasoning": ["off"]})
    assert config().required_inputs() == {"model"}

    def spec(inputs=None, **fields):
        step = {"kind": "posttrain_data", "config": {"procedural": [{"generator": "chain_sum", "size": 4}], **fields},
                "inputs": inputs or {}}
        steps = {"data": step, "student": {"kind": "import_model", "config": {"source": str(tmp_path)}}}
        return parse_spec({"name": "bc", "work_dir": str(tmp_path / "w"), "storage": {"root": str(tmp_path / "s")},
                           "steps": steps})

    spec()
    spec({"model": "student"}, budget_control={"budgets": [4]})
    with pytest.raises(SpecError, match="model"):  # the tokenizer that counts the budgets is not wired
        spec(budget_control={"budgets": [4]})
    with pytest.raises(SpecError, match="inputs.model: only budget_control reads it"):  # wired, read by nothing
        spec({"model": "student"})
    # a changed budget setting is a changed result
    fields = [c.result_fields() for c in (config(), config(bridge=""), config(fraction=0.3), config(seed=2),
                                           config().model_copy(update={"budget_control": None}))]
    assert all(a != b for i, a in enumerate(fields) for b in fields[i + 1:])
