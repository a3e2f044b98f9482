"""The rl stage for real on a tiny policy: GRPO raises a verifier's reward, every per-step figure is logged,
bad prompt sets fail with one message (a SIGKILLed run resuming: tests/train/test_kill_resume.py).

The policy is a tiny NemotronH SFT-trained (tests/stages/rl/letter_policy.py) to answer a toy multiple-choice prompt with a random letter
(right a quarter of the time; the gold letter is always B); RL with the `choice` verifier must raise that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from factory.errors import InputError
from factory.stages import rl
from factory.stage import NullTracker, StepContext
from factory.train.callbacks import read_metrics
from tests.builders import choice_prompt, conversations

# 2 optimizer steps per rollout (PPO-style minibatches: the second one is off-policy, with old log-probs) and a
# checkpoint every step, so a kill can land in the middle of a rollout batch.
CONFIG = dict(steps=10, lr=1e-3, micro_batch_size=16, steps_per_rollout=2, checkpoint_interval=1, keep_checkpoints=2,
              rollout={"group_size": 8, "reasoning": "off", "temperature": 1.0,
                       "length_schedule": [{"until_fraction": 0.5, "max_new_tokens": 3},
                                           {"until_fraction": 1.0, "max_new_tokens": 4}]})
PER_STEP = {"reward", "accuracy", "zero_variance_fraction", "truncation_rate", "entropy", "temperature",
            "response_length", "kl", "grad_norm", "loss", "clip_fraction", "digest"}


@pytest.fixture(scope="module")
def inputs(letter_policy, tmp_path_factory):
    data = conversations(tmp_path_factory.mktemp("rl") / "data", prompts=[choice_prompt(i) for i in range(16)])
    return {"model": letter_policy, "data": data}


@pytest.fixture(scope="module")
def straight(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    tracker = NullTracker()
    result = rl.run(rl.Config(**CONFIG), inputs, out, StepContext("rl", tracker=tracker))
    return out, result, tracker


def test_grpo_raises_the_verifier_reward_and_logs_every_figure(straight):
    out, result, tracker = straight
    records = read_metrics(out / "rollouts.jsonl")
    assert [r["step"] for r in records] == list(range(1, 11))
    assert all(PER_STEP <= set(r) for r in records)
    assert result["accuracy_last"] >= result["accuracy_first"] + 0.25, result  # ~0.25 -> ~0.8 when it learns
    assert records[-1]["kl"] > records[0]["kl"] >= 0  # the policy moved away from the input model
    # the length schedule grows, per rollout batch: rollout 3 starts at step 6 of 10, past until_fraction 0.5
    assert [r["max_new_tokens"] for r in records] == [3] * 6 + [4] * 4
    assert all(0.6 <= r["temperature"] <= 1.5 for r in records)
    assert records[0]["temperature"] == 1.0 and records[-1]["temperature"] != 1.0  # the controller acts
    # two optimizer steps per rollout: the second reuses the batch, off-policy, so ratios move off 1
    assert [r["rollout"] for r in records] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert all(r["clip_fraction"] == 0 for r in records[::2])  # the first step of a rollout is on-policy
    logged = [(m, s) for m, s in tracker.metrics if "rl/reward" in m]
    assert [s for _, s in logged] == list(range(1, 11))
    assert {f"rl/{k}" for k in PER_STEP - {"digest"}} <= set(logged[0][0])
    assert (out / "rl.png").stat().st_size > 0 and out / "rl.png" in tracker.artifacts
    assert not (out / "checkpoints").exists()
    from transformers import AutoTokenizer
    assert "detailed thinking" in AutoTokenizer.from_pretrained(out / "model").chat_template


def _model_only(folder: Path):
    from factory.stage import Artifact

    (folder / "model").mkdir(parents=True)
    (folder / "model/config.json").write_text("{}")
    return Artifact(folder, {"fingerprint": "4" * 64})


def test_a_prompt_without_its_answer_fails_naming_the_file_and_line(tmp_path):
    good = choice_prompt(0).model_dump(mode="json", exclude_none=True)
    bad = {**choice_prompt(1).model_dump(mode="json", exclude_none=True), "answer": None}
    data = conversations(tmp_path / "data", prompts=[good, bad])
    with pytest.raises(InputError, match=r"prompts\.jsonl:2: record 'p1': .*lacks its answer"):
        rl.run(rl.Config(), {"model": _model_only(tmp_path / "m"), "data": data}, tmp_path / "out", StepContext("rl"))
    assert not (tmp_path / "out" / "model").exists()


def test_an_empty_or_filtered_out_prompt_set_fails_naming_the_set(tmp_path):
    model = _model_only(tmp_path / "m")
    empty = conversations(tmp_path / "empty", prompts=[])
    with pytest.raises(InputError, match=r"empty/prompts\.jsonl: no prompts"):
        rl.run(rl.Config(), {"model": model, "data": empty}, tmp_path / "o1", StepContext("rl"))
    choice_only = conversations(tmp_path / "choice", prompts=[choice_prompt(i) for i in range(4)])
    with pytest.raises(InputError, match=r"no prompt has a verifier in verifiers=\['code'\].*\['choice'\]"):
        rl.run(rl.Config(verifiers=["code"]), {"model": model, "data": choice_only}, tmp_path / "o2", StepContext("rl"))
    with pytest.raises(InputError, match="4 prompts, fewer than the 8"):
        rl.run(rl.Config(micro_batch_size=64, rollout={"group_size": 8}), {"model": model, "data": choice_only},
               tmp_path / "o3", StepContext("rl"))


def test_config_checks_the_rollout_fits_and_the_schedule_grows():
    with pytest.raises(ValueError, match="multiple of rollout.group_size 8"):
        rl.Config(micro_batch_size=12, rollout={"group_size": 8})
    with pytest.raises(ValueError, match="length_schedule"):
        rl.Config(rollout={"length_schedule": [{"until_fraction": 0.5, "max_new_tokens": 8}]})
    config = rl.Config(rollout={"length_schedule": [{"until_fraction": 0.5, "max_new_tokens": 8},
                                                    {"until_fraction": 1.0, "max_new_tokens": 16}]})
    assert [config.rollout.max_new_tokens(f) for f in (0.0, 0.49, 0.5, 0.99)] == [8, 8, 16, 16]
