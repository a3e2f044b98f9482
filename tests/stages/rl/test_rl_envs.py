"""One rl step over many environments, for real on the tiny letter policy: five environments (the data input's
prompts, a user's module, the same served over HTTP by a real local server, generated instructions, reasoning-gym
arithmetic) with per-environment curves, the curriculum dropping the ones that give no signal, held-out accuracy
per environment; faults that cost samples within a budget and a server that goes away mid-run; kill -9 mid-rollout
resuming bit-identically with the environments' state."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from factory.envs import EnvironmentConfig, open_environment
from factory.envs.serve import make_server
from factory.stage import NullTracker, StepContext
from factory.stages import rl
from factory.train.callbacks import read_metrics
from factory.train.trainer import Callback
from tests.builders import choice_prompt, conversations
from tests.kill9 import driver_env, kill_after_checkpoint
from tests.train.trainer_kinds import records_digest

BASE = dict(steps=6, lr=1e-3, micro_batch_size=32, checkpoint_interval=0,
            rollout={"group_size": 8, "reasoning": "off", "length_schedule": [{"until_fraction": 1.0, "max_new_tokens": 3}]})


@pytest.fixture(scope="module")
def inputs(letter_policy, tmp_path_factory):
    data = conversations(tmp_path_factory.mktemp("rl_envs") / "data", prompts=[choice_prompt(i) for i in range(16)],
                         heldout=[choice_prompt(100 + i) for i in range(8)])
    return {"model": letter_policy, "data": data}


@pytest.fixture(scope="module")
def say_server():
    """A user's environment served over HTTP by the reference server (a real TCP server on a free port)."""
    server = make_server(open_environment(EnvironmentConfig(name="say", module="tests.envs.user_envs:SayLetter")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def environments(url: str) -> list[dict]:
    return [{"name": "letters", "data": "choice", "weight": 2.0},
            {"name": "say", "module": "tests.envs.user_envs:SayLetter"},
            {"name": "say_http", "url": url},
            {"name": "ifeval", "instructions": {"size": 16}, "heldout": 8},
            {"name": "arith", "procedural": {"generator": "basic_arithmetic", "size": 16}, "heldout": 8}]


def test_one_step_over_five_environments_logs_each_and_drops_those_without_signal(inputs, say_server, tmp_path):
    config = rl.Config(**BASE, environments=environments(say_server), heldout_interval=3,
                       curriculum={"window": 3, "threshold": 0.9, "min_environments": 3})
    tracker = NullTracker()
    result = rl.run(config, inputs, tmp_path, StepContext("rl", tracker=tracker))
    records = read_metrics(tmp_path / "rollouts.jsonl")
    names = ["letters", "say", "say_http", "ifeval", "arith"]
    for name in names:
        assert {f"env/{name}/{k}" for k in ("reward", "pass_rate", "response_length", "entropy", "weight", "lost")} \
            <= set(records[0]), name
    # the letter policy answers with a letter: instructions and arithmetic give every sample the same reward, so
    # the curriculum drops them; the letter environments keep giving signal
    table = json.loads((tmp_path / "environments.json").read_text())
    assert {n: table[n]["dropped"] for n in names} == {"letters": None, "say": None, "say_http": None,
                                                      "ifeval": "no_signal", "arith": "no_signal"}
    assert records[-1]["env/arith/weight"] == 0.0 and records[-1]["env/letters/weight"] == 2.0
    assert all(r["env/say/groups"] + r["env/say_http/groups"] + r["env/letters/groups"] >= 4 for r in records)
    # the served environment and the in-process one are the same environment: the same kind of figures
    assert all(0 <= r["env/say_http/reward"] <= 1 for r in records if r["env/say_http/groups"])
    # held-out accuracy per environment still in the mixture, with its standard error
    for name, n in (("letters", 8), ("say", 8), ("say_http", 8)):
        held = table[name]["heldout"]
        assert held["n"] == n and 0 <= held["accuracy"] <= 1 and held["stderr"] >= 0, (name, held)
        assert result[f"heldout/{name}/accuracy"] == held["accuracy"]
    assert table["ifeval"]["heldout"] is None  # dropped: not evaluated
    # how each held-out pool was kept apart from training: the data input's heldout.jsonl shares no prompt with
    # prompts.jsonl; a module or HTTP environment keeps its own splits
    assert table["letters"]["heldout_split"] == {"requested": 64, "posed": 8, "drawn": 8, "in_training": 0, "repeated": 0}
    assert table["arith"]["heldout_split"]["posed"] == 8 and table["say"]["heldout_split"] is None
    # and every 3 steps as the run goes (heldout_interval), the last one the same as the end's
    assert [r["step"] for r in records if "heldout/say/accuracy" in r] == [3, 6]
    assert records[-1]["heldout/letters/accuracy"] == table["letters"]["heldout"]["accuracy"]
    with pytest.raises(ValueError, match="heldout_interval: a mixture setting needs `environments`"):
        rl.Config(**BASE, heldout_interval=2)
    logged = {k for m, _ in tracker.metrics for k in m}
    assert {"rl/env/say_http/reward", "rl/env/letters/entropy", "heldout/say/accuracy"} <= logged
    assert (tmp_path / "environments.png").stat().st_size > 0


class StopServer(Callback):
    """Shuts the HTTP environment's server down at the end of a step: it goes away mid-run."""

    def __init__(self, server, step: int) -> None:
        self.server, self.step = server, step

    def on_step_end(self, trainer, metrics) -> None:
        if metrics.step == self.step:
            self.server.shutdown()
            self.server.server_close()


def test_faults_cost_samples_within_the_budget_and_a_gone_server_is_dropped(inputs, tmp_path):
    server = make_server(open_environment(EnvironmentConfig(name="say", module="tests.envs.user_envs:SayLetter")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    envs = [{"name": "letters", "data": "choice", "heldout": 0},
            {"name": "bad", "module": "tests.envs.user_envs:Misbehaving", "limits": {"timeout_s": 0.2}, "heldout": 0},
            {"name": "gone", "url": f"http://127.0.0.1:{server.server_address[1]}", "retries": 1, "heldout": 0}]
    config = rl.Config(**{**BASE, "steps": 4}, environments=envs)
    rl.run(config, inputs, tmp_path / "a", StepContext("rl", callbacks=[StopServer(server, 2)]))
    table = json.loads((tmp_path / "a" / "environments.json").read_text())
    assert table["gone"]["dropped"] == "unreachable" and table["letters"]["dropped"] is None
    # three of Misbehaving's four tasks lose their samples: raised, timed out, malformed; over the 0.1 budget
    assert table["bad"]["dropped"] == "error_budget"
    assert all(table["bad"]["lost"][reason] > 0 for reason in ("raised", "timeout", "malformed"))
    records = read_metrics(tmp_path / "a" / "rollouts.jsonl")
    assert len(records) == 4 and records[-1]["env/gone/weight"] == 0.0 and records[0]["lost"] > 0

    # with the whole budget allowed, the misbehaving environment stays and keeps costing samples
    lenient = rl.Config(**{**BASE, "steps": 2}, environments=envs[:2], error_budget=1.0)
    rl.run(lenient, inputs, tmp_path / "b", StepContext("rl"))
    table = json.loads((tmp_path / "b" / "environments.json").read_text())
    assert table["bad"]["dropped"] is None and sum(table["bad"]["lost"].values()) > 0


def test_kill_9_mid_rollout_resumes_the_mixture_bit_identically(inputs, say_server, tmp_path):
    config = {**BASE, "steps": 6, "steps_per_rollout": 2, "micro_batch_size": 16, "checkpoint_interval": 1,
              "keep_checkpoints": 2, "environments": environments(say_server)[:4],
              "curriculum": {"window": 2, "threshold": 0.9, "min_environments": 2}}
    rl.run(rl.Config(**config), inputs, tmp_path / "straight", StepContext("rl"))
    folders = json.dumps({"rl": {name: str(a.path) for name, a in inputs.items()}})
    out, log = tmp_path / "killed", tmp_path / "log.txt"

    def driver(*extra: str) -> subprocess.Popen:
        with open(log, "a") as fh:
            return subprocess.Popen([sys.executable, "tests/train/kind_driver.py", folders, "rl", str(out),
                                     json.dumps(config), *extra], env=driver_env(), stdout=fh, stderr=subprocess.STDOUT)

    saved = kill_after_checkpoint(driver("--step-sleep", "0.3"), out / "checkpoints", 3, log, timeout=300)
    assert saved < 6 and not (out / "model").exists()
    assert driver().wait(timeout=300) == 0, log.read_text()[-3000:]
    assert [r["loss"] for r in read_metrics(out / "metrics.jsonl")] == \
        [r["loss"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    assert records_digest(out) == records_digest(tmp_path / "straight")
    assert (out / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model" / "model.safetensors").read_bytes()


def test_multi_turn_episodes_continue_from_the_sampled_tokens_and_observations_take_no_loss(letter_policy):
    from transformers import AutoTokenizer

    from factory.envs import Mixture
    from factory.generate.groups import LocalSampler
    from factory.model.checkpoints import load_model
    from factory.stages.rl.config import RolloutConfig
    from factory.stages.rl.rollout import RolloutBatches

    tokenizer = AutoTokenizer.from_pretrained(letter_policy.path / "model")
    policy = load_model(letter_policy.path / "model")
    env = open_environment(EnvironmentConfig(name="two", module="tests.envs.user_envs:TwoTurns",
                                             limits={"max_turns": 2}))
    config = RolloutConfig(group_size=4, reasoning="off", target_entropy=None, dynamic_sampling=False,
                           filter_overlong=False, length_schedule=[{"until_fraction": 1.0, "max_new_tokens": 4}])
    batches = RolloutBatches(Mixture([env], [1.0]), policy, LocalSampler(policy, tokenizer), config,
                             samples_per_rollout=8, steps_per_rollout=1, total_steps=1, seed=0,
                             pad_id=tokenizer.pad_token_id)
    rows = [batches.sample(p) for p in range(8)]
    two_turns = 0
    for row in rows:
        mask = row["completion_mask"].tolist()
        ones = [i for i, m in enumerate(mask) if m]
        gap = [i for i in range(ones[0], ones[-1]) if not mask[i]]
        if not gap:  # the first turn was cut at the length limit: the episode ended there
            continue
        two_turns += 1
        observation = tokenizer.decode(row["input_ids"][gap], skip_special_tokens=False)
        assert "<|im_start|>tool\nTry again: the letter is" in observation and observation.endswith("assistant\n")
        # the policy's tokens around it take the loss: each turn ends with its own end-of-turn token
        assert tokenizer.decode(row["input_ids"][gap[0] - 1]) == "<|im_end|>"
    assert two_turns >= 4
    assert batches.stats.lost == 0 and 0 <= batches.stats.reward <= 1
