"""RL's code reward: 1 only when every test statement ran to its end, and one reply's trouble costs that reply."""

from __future__ import annotations

from factory.chat.records import Message, Prompt
from factory.stages.rl.rewards import RewardConfig, VerifierRewards
from factory.verify import SandboxConfig

TESTS = "assert add(2, 3) == 5\nassert add(1, 1) == 2"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "def add(a, b):\n    return a - b\n"
DEEP_TREE = "import os\nfor _ in range(2000):\n    os.mkdir('d')\n    os.chdir('d')\nos.chdir('/')\n"  # past the recursion limit


def code_prompt(i: int) -> Prompt:
    return Prompt(id=f"code{i}", task="t", verifier="code", answer=TESTS, messages=[Message(role="user", content=f"Question {i}")])


def score(replies: list[str]) -> list[float]:
    config = RewardConfig(sandbox=SandboxConfig(isolation="none", timeout_s=20, cpu_s=10))
    with VerifierRewards(config) as rewards:
        return rewards.score([code_prompt(i) for i in range(len(replies))], replies)


def test_a_reply_that_exits_early_scores_zero():
    """Each of these exits with status 0 before the asserts run, and scored 1.0 before the test harness."""
    exits = ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "import atexit, os\natexit.register(os._exit, 0)",
             "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\nraise ValueError"]
    replies = [RIGHT] + [f"<think>\nok\n</think>\n\n```python\n{WRONG}{e}\n```" for e in exits]
    assert score(replies) == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_one_reply_that_breaks_cleanup_costs_that_reply_only():
    """A reply that leaves a folder tree 2000 deep: before, removing it raised RecursionError and the batch lost
    every reward."""
    deep_right = f"```python\n{DEEP_TREE}def add(a, b):\n    return a + b\n```"
    assert score([RIGHT, deep_right, f"```python\n{WRONG}```", RIGHT]) == [1.0, 1.0, 0.0, 1.0]
