"""The HTTP environment against real local servers: the reference server in a thread and as `python -m
factory.envs.serve`, one turn and two, a server that fails a request, and one that goes away."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from factory.envs import EnvironmentConfig, EnvironmentGone, guarded_step, open_environment
from factory.envs.serve import make_server


@pytest.fixture
def served():
    """Serve an environment in a thread of this process; yields a function config -> url."""
    servers = []

    def serve(config: EnvironmentConfig) -> str:
        server = make_server(open_environment(config))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_served_environment_poses_and_scores_as_it_does_in_process(served):
    config = EnvironmentConfig(name="if", instructions={"size": 6, "constraints": 2}, heldout=3)
    local = open_environment(config)
    remote = open_environment(EnvironmentConfig(name="if_http", url=served(config)))
    assert (remote.size("train"), remote.size("heldout")) == (6, 3)
    replies = ["* a\n* b", '{"a": 1}', "That is all.", "river stone blue"]
    for index in range(6):
        episodes = [remote.reset("train", index) for _ in replies]
        assert episodes[0].messages == local.reset("train", index).messages
        assert len({e.state for e in episodes}) == len(replies)  # one server episode each
        got = [o.reward for o in guarded_step(remote, episodes, replies)]
        want = [o.reward for o in guarded_step(local, [local.reset("train", index) for _ in replies], replies, trusted=True)]
        assert got == want


def test_a_multi_turn_server_answers_with_an_observation_then_a_reward(served):
    url = served(EnvironmentConfig(name="two", module="tests.envs.user_envs:TwoTurns"))
    env = open_environment(EnvironmentConfig(name="two_http", url=url, limits={"max_turns": 2}))
    episode = env.reset("train", 1)
    [first] = guarded_step(env, [episode], ["A"])
    assert not first.done and first.observation == "Try again: the letter is B."
    [second] = guarded_step(env, [episode], ["B"])
    assert second.done and second.reward == 1.0


def test_a_request_the_server_fails_costs_that_sample_and_a_gone_server_raises(served):
    url = served(EnvironmentConfig(name="bad", module="tests.envs.user_envs:Misbehaving", limits={"timeout_s": 0.1}))
    env = open_environment(EnvironmentConfig(name="bad_http", url=url, retries=1, limits={"timeout_s": 2.0}))
    # the served environment's third episode sleeps past its own timeout but within the client's: it is scored
    outcomes = guarded_step(env, [env.reset("train", i) for i in range(4)], ["A", "A", "A", "A"])
    assert [o.reward for o in outcomes] == [1.0, None, 0.0, None]
    assert [o.fault for o in outcomes] == [None, "raised", None, "malformed"]
    assert "HTTP 500" in outcomes[1].detail and "after 1 retries" in outcomes[1].detail


def test_the_reference_server_as_a_process_and_the_environment_going_away():
    config = {"name": "arith", "procedural": {"generator": "basic_arithmetic", "size": 4}, "heldout": 2}
    process = subprocess.Popen([sys.executable, "-m", "factory.envs.serve", "--env", json.dumps(config), "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("serving http://127.0.0.1:"), line
        env = open_environment(EnvironmentConfig(name="arith_http", url=line.split()[1], retries=1))
        episode = env.reset("train", 0)
        assert episode.messages[0]["content"].endswith("Give the final answer in \\boxed{}.")
        [wrong] = guarded_step(env, [episode], ["\\boxed{0.5}"])
        assert wrong.done and wrong.reward == 0.0
        episode = env.reset("train", 1)
    finally:
        process.kill()
        process.wait()
    with pytest.raises(EnvironmentGone, match=r"/step: ConnectError.*after 1 retries"):
        guarded_step(env, [episode], ["\\boxed{1}"])
