"""Rollouts and rewards on their own: verifier rewards per kind, dynamic sampling, overlong filtering, the
temperature controller, and rollouts from an OpenAI-compatible server that reloads the published policy."""

from __future__ import annotations

import re

import pytest
import torch

from factory.envs import Mixture, prompts_environment
from factory.errors import ServiceError
from factory.generate.settings import GeneratorSettings
from factory.chat.records import Message, Prompt
from factory.chat.thinking import final_answer
from factory.stages.rl.rewards import RewardConfig, VerifierRewards, code_of
from factory.stages.rl.config import RolloutConfig
from factory.generate.groups import EndpointSampler, Sample
from factory.stages.rl.rollout import PolicyPublisher, RolloutBatches, next_temperature
from factory.verify import SandboxConfig
from tests.builders import choice_prompt, choice_tokenizer
from tests.stages.synth.fake_openai import FakeOpenAI


def prompt(verifier: str, answer, i: int = 0) -> Prompt:
    return Prompt(id=f"{verifier}{i}", task="t", verifier=verifier, answer=answer,
                  messages=[Message(role="user", content=f"Question {i}")])


def test_each_verifier_scores_right_and_wrong_replies():
    config = RewardConfig(math_workers=1, sandbox=SandboxConfig(isolation="none", timeout_s=10))
    cases = [
        (prompt("math", "\\frac{1}{2}"), "<think>\nhalf of one\n</think>\n\nThe answer is \\boxed{0.5}", 1.0),
        (prompt("math", "3"), "<think>\nit is \\boxed{3}\n</think>\n\nI am not sure.", 0.0),  # only the final answer counts
        (prompt("code", "assert add(2, 3) == 5"), "Here:\n```python\ndef add(a, b):\n    return a + b\n```", 1.0),
        (prompt("code", "assert add(2, 3) == 5"), "```python\ndef add(a, b):\n    return a - b\n```", 0.0),
        (prompt("tool", [{"name": "weather", "arguments": {"city": "Oslo"}}]),
         '<think>weather</think><tool_call>[{"name": "weather", "arguments": {"city": "Oslo"}}]</tool_call>', 1.0),
        (prompt("tool", [{"name": "weather", "arguments": {"city": "Oslo"}}]),
         '<tool_call>[{"name": "weather", "arguments": {"city": "Oslo"}}]</tool_call>', 0.0),  # Tool-N1: format too
        (prompt("choice", {"gold": "C", "options": ["4", "6", "7"]}), "<think>\n7 is prime\n</think>\n\n\\boxed{C}", 1.0),
        (prompt("choice", {"gold": "C", "options": ["4", "6", "7"]}), "\\boxed{A}", 0.0),
        (prompt("choice", {"gold": "carbon dioxide", "options": []}), "\\boxed{Carbon dioxide.}", 1.0),
    ]
    with VerifierRewards(config) as rewards:
        got = rewards.score([p for p, _, _ in cases], [r for _, r, _ in cases])
    assert got == [want for _, _, want in cases]
    assert final_answer("<think>\na\n</think>\n\nb") == "b" and code_of("x\n```py\nprint(1)\n```") == "print(1)\n"


class ScriptedSampler:
    """Stands in for the policy's sampling so the test controls which groups are all right, all wrong or
    truncated; the rollout source, rewards and forward passes around it are the real ones."""

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def sample(self, chats, group_size, max_new_tokens, temperature, generator):
        self.calls += 1
        groups = []
        for chat in chats:
            i = int(re.search(r"Question (\d+)", chat[-1]["content"]).group(1))
            groups.append([Sample([1, 2, 3], [5 + k, 6, 7][: 2 if trunc else 3], text, trunc)
                           for k, (text, trunc) in enumerate(self.script(i))])
        return groups


def tiny_policy():
    from factory.model.build import build_model
    from factory.model.presets import tiny

    torch.manual_seed(0)
    return build_model(tiny(), 40)


def choice(i):
    return choice_prompt(i)  # gold "B"


def data_mixture(prompts):
    """The prompts as rl without `environments` trains on them: one environment, each prompt scored by its verifier."""
    return Mixture([prompts_environment(prompts, VerifierRewards())], [1.0])


def source(script, prompts, **rollout):
    config = RolloutConfig(group_size=2, temperature=1.0, target_entropy=None, **{"reasoning": "off", **rollout})
    return RolloutBatches(data_mixture(prompts), tiny_policy(), ScriptedSampler(script), config,
                          samples_per_rollout=4, steps_per_rollout=1, total_steps=4, seed=0, pad_id=0)


def test_dynamic_sampling_drops_uniform_groups_and_overlong_samples_take_no_loss():
    def script(i):  # i % 4: 0 all right, 1 all wrong, 2 mixed, 3 mixed with the right one cut at the length limit
        return [[("B", False), ("B", False)], [("A", False), ("D", False)], [("B", False), ("C", False)],
                [("B", True), ("A", False)]][i % 4]

    batches = source(script, [choice(i) for i in range(8)])
    rows = [batches.sample(p) for p in range(4)]
    stats = batches.stats
    assert stats.groups_sampled > 2 and stats.groups_filled == 0
    assert stats.zero_variance_fraction == pytest.approx((stats.groups_sampled - 2) / stats.groups_sampled)
    # every kept group has one right and one wrong sample: advantages +-0.5 / (std + 1e-4), std = 0.7071
    adv = sorted(round(float(r["advantages"]), 4) for r in rows)
    assert adv == [-0.7070, -0.7070, 0.7070, 0.7070]
    for r in rows:
        completion = r["completion_mask"]
        length = int((r["input_ids"][3:] != 0).sum())
        assert completion[:3].sum() == 0  # the prompt takes no loss
        assert completion.sum() in (0, 3) and (completion.sum() == 0) == (length == 2)  # truncated: no loss at all
    assert batches.stats.truncation_rate > 0
    # without dynamic sampling, uniform groups stay in the batch with zero advantage
    plain = source(script, [choice(i) for i in range(8)], dynamic_sampling=False)
    rows = [plain.sample(p) for p in range(4)]
    assert plain.stats.groups_sampled == 2 and plain.sampler.calls == 1


def test_when_every_group_is_uniform_the_batch_is_filled_and_says_so():
    batches = source(lambda i: [("B", False), ("B", False)], [choice(i) for i in range(4)], max_sampling_rounds=3)
    rows = [batches.sample(p) for p in range(4)]
    assert batches.sampler.calls == 3 and batches.stats.groups_filled == 2
    assert all(float(r["advantages"]) == 0 for r in rows)  # no signal: the step moves nothing
    assert batches.stats.zero_variance_fraction == 1.0


def test_a_reply_that_breaks_the_reasoning_switch_scores_zero():
    think = "<think>\nB it is\n</think>\n\nB"
    batches = source(lambda i: [(think, False), ("B", False)], [choice(i) for i in range(4)], reasoning="both",
                     dynamic_sampling=False)
    rows = [batches.sample(p) for p in range(4)]
    # draws alternate on, off: under "on" only the think reply is right, under "off" only the bare one
    assert sorted(round(float(r["advantages"]), 3) for r in rows) == [-0.707, -0.707, 0.707, 0.707]
    assert batches.stats.reward == 0.5 and batches.stats.accuracy == 1.0  # right answers, half in the wrong format
    lenient = source(lambda i: [(think, False), ("B", False)], [choice(i) for i in range(4)], reasoning="both",
                     dynamic_sampling=False, switch_format=False)
    [lenient.sample(p) for p in range(4)]
    assert lenient.stats.reward == 1.0


def test_temperature_controller_holds_the_entropy_target_within_bounds():
    config = RolloutConfig(temperature=1.0, target_entropy=0.3, temperature_rate=0.1, temperature_range=(0.6, 1.5))
    assert next_temperature(1.0, 0.1, config) > 1.0  # collapsing: heat up
    assert next_temperature(1.0, 0.6, config) < 1.0  # too random: cool down
    assert next_temperature(1.0, 0.3, config) == 1.0
    assert next_temperature(1.0, 50.0, config) == pytest.approx(1.0 * 2.718281828 ** -0.1)  # one step is bounded
    t = 1.0
    for _ in range(100):
        t = next_temperature(t, 5.0, config)
    assert t == 0.6
    assert next_temperature(1.0, 0.1, config.model_copy(update={"target_entropy": None})) == 1.0


class PolicyServer(FakeOpenAI):
    """A stand-in for vLLM / NIM (for the reload hook only): POST /reload loads the folder it names with
    transformers, and /v1/chat/completions samples from whatever it loaded last."""

    def __init__(self, fail_reload: bool = False):
        super().__init__()
        self.fail_reload = fail_reload
        self.reloads: list[dict] = []
        self.policy = None

    def answer(self, path, body):
        from factory.generate import GenerationParams, TransformersGenerator

        with self.lock:
            self.requests.append((path, body))
        if path == "/reload":
            if self.fail_reload:
                return 500, {}, {"error": {"message": "cannot load"}}
            self.reloads.append(body)
            self.policy = TransformersGenerator(body["model_dir"], batch_size=1)
            return 200, {}, {"loaded": body["model_dir"]}
        params = GenerationParams(max_new_tokens=body["max_tokens"], temperature=body["temperature"], seed=body["seed"])
        text = self.policy.generate([body["messages"]], params)[0]
        return 200, {}, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def test_endpoint_rollouts_come_from_the_policy_each_step_publishes(choice_policy, tmp_path):
    from factory.generate import GenerationParams, TransformersGenerator
    from factory.model.checkpoints import load_model

    model_dir = choice_policy.path / "model"
    policy = load_model(model_dir)
    with PolicyServer() as server:
        endpoint = GeneratorSettings(kind="openai", base_url=server.url, model="policy", max_concurrency=1)
        publisher = PolicyPublisher(tmp_path / "policy", model_dir, f"{server.url}/reload")
        publisher.publish(policy, 0)
        assert server.reloads == [{"model_dir": str(tmp_path / "policy"), "step": 0}]
        assert "detailed thinking" in TransformersGenerator(tmp_path / "policy").tokenizer.chat_template

        # the server samples the published weights: each completion is what they give with its request's seed
        sampler = EndpointSampler(endpoint, choice_tokenizer())
        groups = sampler.sample([choice(0).chat("off")], 2, 5, 1.0, torch.Generator().manual_seed(0))
        bodies = [b for p, b in server.requests if p == "/v1/chat/completions"]
        assert len({b["seed"] for b in bodies}) == 2  # one seed per sample, drawn from the rollout generator
        local = TransformersGenerator(tmp_path / "policy", batch_size=1)
        again = [local.generate([b["messages"]], GenerationParams(max_new_tokens=5, temperature=1.0, seed=b["seed"]))[0]
                 for b in bodies]
        assert [s.text for s in groups[0]] == again
        assert all(s.prompt_ids == groups[0][0].prompt_ids and s.truncated == (len(s.completion_ids) >= 5) for s in groups[0])

        # in training, every rollout batch first publishes the policy as it is then
        config = RolloutConfig(group_size=2, target_entropy=None, generator=endpoint, reload_url=f"{server.url}/reload",
                               dynamic_sampling=False,
                               length_schedule=[{"until_fraction": 1.0, "max_new_tokens": 5}])
        batches = RolloutBatches(data_mixture([choice(i) for i in range(4)]), policy, sampler, config,
                                 samples_per_rollout=4, steps_per_rollout=1, total_steps=2, seed=0, pad_id=0,
                                 publisher=publisher)
        batches.sample(0)
        first = (tmp_path / "policy/model.safetensors").read_bytes()
        with torch.no_grad():  # what an optimizer step does: the weights change
            for p in policy.parameters():
                p.add_(0.01)
        batches.sample(4)
        assert [r["step"] for r in server.reloads] == [0, 0, 1]
        assert (tmp_path / "policy/model.safetensors").read_bytes() != first
        assert batches.stats.rollout == 1


def test_a_failing_reload_stops_the_step_naming_the_url(choice_policy, tmp_path):
    from factory.model.checkpoints import load_model

    model_dir = choice_policy.path / "model"
    policy = load_model(model_dir)
    with PolicyServer(fail_reload=True) as server:
        publisher = PolicyPublisher(tmp_path / "policy", model_dir, f"{server.url}/reload")
        with pytest.raises(ServiceError, match=rf"{re.escape(server.url)}/reload: policy reload refused \(HTTP 500"):
            publisher.publish(policy, 0)
    unreachable = PolicyPublisher(tmp_path / "policy2", model_dir, "http://127.0.0.1:9/reload")
    with pytest.raises(ServiceError, match=r"127\.0\.0\.1:9/reload: policy reload failed"):
        unreachable.publish(policy, 0)
