"""Held-out means unseen: an environment's held-out pool never poses a prompt of its training pool, whatever the
source; what was removed is counted, and a task space too small for the size asked for says so."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from factory.artifacts import Conversations
from factory.envs import EnvironmentConfig, HeldoutSplit, Task, TaskEnvironment, open_environment, prompt_key, unseen_heldout
from tests.builders import choice_prompt, conversations

ONE_DIGIT = {"min_digits": 1, "max_digits": 1, "min_terms": 2, "max_terms": 2, "operators": ["+"],
             "allow_parentheses": False, "allow_negation": False}


def prompts(env, split):
    return [prompt_key(env.reset(split, i).state) for i in range(env.size(split))]


def test_prompt_key_ignores_whitespace_and_case_and_reads_user_turns():
    assert prompt_key(Task("a", "Calculate  5 + 9.\n", "math", "14")) == prompt_key(Task("b", "calculate 5 + 9.", "math", "14"))
    turns = Task("c", "ignored", "math", "1", messages=[{"role": "user", "content": "What is 1?"}])
    assert prompt_key(turns) == "what is 1?"


def test_unseen_heldout_removes_training_prompts_and_repeats_and_counts_them():
    train = [Task(f"t{i}", f"q{i}", "math", "0") for i in range(3)]
    candidates = [Task("h0", "q1", "math", "0"), Task("h1", "q7", "math", "0"), Task("h2", "Q7 ", "math", "0"),
                  Task("h3", "q8", "math", "0"), Task("h4", "q9", "math", "0")]
    held, split = unseen_heldout(train, candidates, 2)
    assert [t.id for t in held] == ["h1", "h3"]
    assert split == HeldoutSplit(requested=2, posed=2, drawn=4, in_training=1, repeated=1) and not split.short


def test_a_small_task_space_gives_only_its_unseen_prompts_and_says_so():
    # one-digit sums: about a hundred distinct prompts, most of them drawn by 256 training tasks
    config = EnvironmentConfig(name="add", procedural={"generator": "basic_arithmetic", "size": 256, "params": ONE_DIGIT},
                               heldout=50)
    with capture_logs() as logs:
        env = open_environment(config)
    train, held = set(prompts(env, "train")), prompts(env, "heldout")
    assert held and not set(held) & train and len(set(held)) == len(held)
    split = env.heldout_split
    assert split.short and split.posed == len(held) < 50 and split.drawn == 16 * 50
    assert split.drawn == split.posed + split.in_training + split.repeated
    short = [e for e in logs if e["event"] == "heldout_short"]
    assert len(short) == 1 and short[0]["environment"] == "add" and short[0]["posed"] == len(held)
    # deterministic: the same config poses the same held-out pool
    assert prompts(open_environment(config), "heldout") == held


def test_a_large_task_space_gives_the_full_pool_disjoint_from_training():
    two_digit = {**ONE_DIGIT, "min_digits": 2, "max_digits": 2}
    env = open_environment(EnvironmentConfig(name="add", procedural={"generator": "basic_arithmetic", "size": 256,
                                                                     "params": two_digit}, heldout=300))
    assert env.size("heldout") == 300 and not set(prompts(env, "heldout")) & set(prompts(env, "train"))
    assert not env.heldout_split.short and env.heldout_split.drawn >= 300
    ifeval = open_environment(EnvironmentConfig(name="if", instructions={"size": 64}, heldout=100))
    held = prompts(ifeval, "heldout")
    assert len(held) == len(set(held)) == 100 and not set(held) & set(prompts(ifeval, "train"))


def test_the_data_input_heldout_records_that_are_training_prompts_are_removed_and_counted(tmp_path):
    data = conversations(tmp_path / "data", prompts=[choice_prompt(i) for i in range(4)],
                         heldout=[choice_prompt(1), choice_prompt(9), choice_prompt(3), choice_prompt(10)])
    artifact = Conversations.of({"data": data}, "data")
    env = open_environment(EnvironmentConfig(name="d", data="choice", heldout=8), data=artifact)
    assert [env.reset("heldout", i).task_id for i in range(env.size("heldout"))] == ["p9", "p10"]
    assert env.heldout_split == HeldoutSplit(requested=8, posed=2, drawn=4, in_training=2, repeated=0)


def test_a_jsonl_with_a_repeated_prompt_never_holds_out_a_training_prompt(tmp_path):
    path = tmp_path / "mine.jsonl"
    records = [choice_prompt(i % 3).model_copy(update={"id": f"r{i}"}) for i in range(9)]  # each prompt three times
    path.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in records))
    env = open_environment(EnvironmentConfig(name="mine", jsonl=str(path), heldout=3))
    assert env.size("train") == 6 and not set(prompts(env, "heldout")) & set(prompts(env, "train"))
    assert env.heldout_split.in_training + env.heldout_split.repeated + env.heldout_split.posed == 3


def test_given_pools_are_held_to_the_same_rule():
    train = [Task("t0", "q0", "math", "0"), Task("t1", "q1", "math", "1")]
    env = TaskEnvironment(EnvironmentConfig(name="g", procedural="basic_arithmetic", heldout=2),
                          tasks=(train, [Task("h0", "q1", "math", "1"), Task("h1", "q2", "math", "2")]))
    assert env.size("heldout") == 1 and env.heldout_split.in_training == 1
