"""Environments on their own: every task source poses tasks its scorer scores right and wrong, python tool turns,
a user's module, faults that cost one sample each, and settings refused at load."""

from __future__ import annotations

import json

import pytest

from factory.artifacts import Conversations
from factory.envs import EnvironmentConfig, guarded_step, open_environment
from factory.envs.environment import HELDOUT_SEED
from factory.envs.verifiers import RewardConfig
from factory.errors import InputError, SpecError
from factory.verify import SandboxConfig
from tests.builders import choice_prompt, conversations

REWARDS = RewardConfig(math_workers=1, sandbox=SandboxConfig(isolation="none", timeout_s=10))


def scored(env, index, replies):
    episodes = [env.reset("train", index) for _ in replies]
    return [o.reward for o in guarded_step(env, episodes, replies, trusted=True)]


def test_a_procedural_environment_poses_generated_tasks_and_holds_out_another_seed():
    env = open_environment(EnvironmentConfig(name="arith", procedural={"generator": "basic_arithmetic", "size": 6},
                                             heldout=3), rewards=REWARDS)
    try:
        assert env.size("train") == 6 and env.size("heldout") == 3
        task = env.reset("train", 2).state
        assert env.reset("heldout", 0).state.id.startswith(f"basic_arithmetic-{HELDOUT_SEED}-")
        assert scored(env, 2, [f"<think>\nsum\n</think>\n\n\\boxed{{{task.answer}}}", "\\boxed{0.123}"]) == [1.0, 0.0]
    finally:
        env.close()


def test_task_files_jsonl_and_the_data_input_pose_tasks_their_verifiers_score(tmp_path):
    mcq = open_environment(EnvironmentConfig(name="mcq", task_file="multiple_choice", heldout=2), rewards=REWARDS)
    gold = mcq.reset("train", 0).state.answer["gold"]
    assert scored(mcq, 0, [f"\\boxed{{{gold}}}", "\\boxed{Z}"]) == [1.0, 0.0]
    tools = open_environment(EnvironmentConfig(name="tools", task_file="tool_calls", heldout=2), rewards=REWARDS)
    task = tools.reset("train", 0).state
    right = f"<think>\nuse the tool\n</think>\n<tool_call>{json.dumps(task.answer)}</tool_call>"
    assert scored(tools, 0, [right, "no call"]) == [1.0, 0.0]
    assert not tools.keeps_switch_format(tools.reset("train", 0)) and mcq.keeps_switch_format(mcq.reset("train", 0))

    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(choice_prompt(i).model_dump(mode="json")) + "\n" for i in range(5)))
    mine = open_environment(EnvironmentConfig(name="mine", jsonl=str(path), heldout=1), rewards=REWARDS)
    assert (mine.size("train"), mine.size("heldout")) == (4, 1) and scored(mine, 0, ["B", "C"]) == [1.0, 0.0]
    with pytest.raises(InputError, match=r"5 items, not more than the 5 held out"):
        open_environment(EnvironmentConfig(name="mine", jsonl=str(path), heldout=5))

    data = conversations(tmp_path / "data", prompts=[choice_prompt(i) for i in range(3)],
                         heldout=[choice_prompt(9)])
    artifact = Conversations.of({"data": data}, "data")
    env = open_environment(EnvironmentConfig(name="d", data="choice"), data=artifact, rewards=REWARDS)
    assert (env.size("train"), env.size("heldout")) == (3, 1)
    with pytest.raises(InputError, match=r"holds no 'math' prompt; it holds \['choice'\]"):
        open_environment(EnvironmentConfig(name="d", data="math"), data=artifact)


def test_instruction_environment_scores_the_share_of_constraints_met():
    env = open_environment(EnvironmentConfig(name="if", instructions={"size": 8, "constraints": 2}))
    episode = env.reset("train", 0)
    assert env.reset("train", 0).messages == episode.messages  # the same index poses the same task
    rewards = scored(env, 0, ["x", "{}"])
    assert all(r in (0.0, 0.5, 1.0) for r in rewards)


def test_python_tool_turns_run_code_in_the_sandbox_then_score_the_last_reply():
    env = open_environment(EnvironmentConfig(name="py", procedural={"generator": "chain_sum", "size": 2}, heldout=0,
                                             tools="python", limits={"max_turns": 2}), rewards=REWARDS)
    try:
        episode = env.reset("train", 0)
        [first] = guarded_step(env, [episode], ["Compute it.\n```python\nprint(40 + 2)\n```"], trusted=True)
        assert not first.done and first.observation == "Output:\n42"
        # the last turn is scored even when it holds code
        [last] = guarded_step(env, [episode], [f"```python\nprint(1)\n```\n\\boxed{{{episode.state.answer}}}"],
                              trusted=True)
        assert last.done and last.reward == 1.0
    finally:
        env.close()


def test_a_users_module_environment_and_its_faults_cost_one_sample_each():
    config = EnvironmentConfig(name="bad", module="tests.envs.user_envs:Misbehaving", limits={"timeout_s": 0.2})
    env = open_environment(config)
    episodes = [env.reset("train", i) for i in range(4)]  # letters A, B, C, D
    outcomes = guarded_step(env, episodes, ["A", "A", "A", "A"])
    assert [o.reward for o in outcomes] == [1.0, None, None, None]
    assert [o.fault for o in outcomes] == [None, "raised", "timeout", "malformed"]
    assert "the environment broke" in outcomes[1].detail and "not a finite number" in outcomes[3].detail
    with pytest.raises(SpecError, match="not a subclass of factory.envs.Environment"):
        open_environment(EnvironmentConfig(name="x", module="tests.envs.user_envs:NotAnEnvironment"))
    with pytest.raises(SpecError, match="cannot be loaded"):
        open_environment(EnvironmentConfig(name="x", module="tests.envs.no_such_module:Env"))


@pytest.mark.parametrize("fields,message", [
    ({}, "give exactly one task source"),
    ({"procedural": "gcd", "task_file": "multiple_choice"}, "give exactly one task source"),
    ({"url": "http://x", "scorer": "judge"}, "cannot be set for a url environment"),
    ({"procedural": "gcd", "scorer": "math"}, "Input should be 'judge'"),
    ({"procedural": "gcd", "tools": "python"}, "set limits.max_turns to 2"),
    ({"procedural": "gcd", "retries": 3}, "retries apply to an HTTP environment"),
    ({"module": "no_colon"}, "must read 'package.module:Class'"),
    ({"url": "ftp://x"}, "must start with http"),
    ({"procedural": "gcd", "scorer": "judge"}, "scorer judge and the judge settings go together"),
    ({"instructions": {}, "scorer": "judge", "judge": {"generator": {"kind": "openai", "base_url": "http://x",
                                                                     "model": "j"}}}, "scored by their constraint checks"),
    ({"procedural": "gcd", "limits": {"max_turns": 3}}, "needs tools"),
    ({"procedural": "gcd", "name": "a b"}, "letters, digits"),
])
def test_settings_an_environment_cannot_honour_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        EnvironmentConfig(**{"name": "e", **fields})


def test_a_judge_without_a_model_folder_is_the_rl_steps_input_and_alone_is_refused_when_opened():
    # its model is an rl step's `judge` input (tests/stages/rl/test_rl_genrm.py); opened without one, one clear line
    config = EnvironmentConfig(name="e", procedural={"generator": "gcd", "size": 2}, heldout=0, scorer="judge",
                               judge={"generator": {"kind": "transformers"}})
    assert config.judge.from_input
    with pytest.raises(SpecError, match=r"^judge.generator: no model_dir, and no rl step's `judge` input") as raised:
        open_environment(config)
    assert "\n" not in str(raised.value)


def test_a_judge_scores_an_environment_and_a_malformed_verdict_loses_its_sample():
    from tests.stages.synth.fake_openai import FakeOpenAI

    def judge(prompt: str) -> str:  # correct when the response's last word is the reference; no verdict for "?"
        reference = prompt.split("Reference answer:", 1)[1].split("Response:", 1)[0].strip()
        response = prompt.split("Response:", 1)[1].split("End your", 1)[0].strip()
        if response.endswith("?"):
            return "I cannot tell."
        return f"Verdict: {'correct' if response.split()[-1] == reference else 'incorrect'}"

    with FakeOpenAI(reply=judge) as server:
        config = EnvironmentConfig(name="graded", procedural={"generator": "basic_arithmetic", "size": 4}, heldout=0,
                                   scorer="judge", judge={"generator": {"kind": "openai", "base_url": server.url,
                                                                        "model": "judge"}, "max_new_tokens": 16})
        env = open_environment(config)
        try:
            answer = env.reset("train", 0).state.answer
            replies = [f"<think>\nadd\n</think>\n\nIt is {answer}", "It is 0.5", "Maybe?"]
            outcomes = guarded_step(env, [env.reset("train", 0) for _ in replies], replies, trusted=True)
        finally:
            env.close()
    assert [o.reward for o in outcomes] == [1.0, 0.0, None] and outcomes[2].fault == "malformed"
    with pytest.raises(ValueError, match="judge.error_budget"):
        EnvironmentConfig(**{**config.model_dump(exclude={"judge"}), "judge": {**config.judge.model_dump(),
                                                                              "error_budget": 0.5}})
