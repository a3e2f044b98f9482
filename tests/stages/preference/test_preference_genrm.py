"""Preference pairs from a generative reward model (judge genrm): the tiny policy samples, a GenRM behind a real
OpenAI-compatible HTTP server (tests/stages/synth/fake_openai.py: a standard-library server on 127.0.0.1 whose replies a
function of the prompt scripts) compares two samples at a time in both orders; the sample it prefers is chosen, ties
and malformed verdicts give no pair and are counted; a GenRM that answers garbage fails the step over its error budget."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from factory.chat.records import read_prompts
from factory.errors import InputError
from factory.judge import JudgeBudgetError
from factory.plan import plan_spec
from factory.spec import parse_spec
from factory.stage import StepContext
from factory.stages import preference
from tests.cost.test_step_costs import _every_kind
from tests.stages.preference.test_preference_stage import CONFIG, copy_data, policy
from tests.stages.synth.fake_openai import FakeOpenAI

# two comparisons per prompt (samples 0 and 1, 2 and 3); the garbage GenRM's run stops before training, on fewer prompts
TRAIN = {**CONFIG, "pairs_per_prompt": 2, "checkpoint_interval": 0}
QUICK = {**TRAIN, "heldout_prompts": 10, "max_prompts": 30}


def copy_judge(prompt: str) -> str:
    """Prefers the response that repeats the question's number; a tie when both or neither do."""
    number = re.search(r"Repeat (\d+)\.", prompt).group(1)
    a = prompt.split("Response A:\n", 1)[1].split("\n\nResponse B:", 1)[0].strip()
    b = prompt.split("Response B:\n", 1)[1].split("\n\nEnd your reply", 1)[0].strip()
    return "Comparing.\nVerdict: " + ("A" if (a == number) > (b == number) else "B" if (b == number) > (a == number)
                                      else "tie")


def genrm(url: str, **fields) -> dict:
    return {"generator": {"kind": "openai", "base_url": url, "model": "genrm-model"}, "mode": "pairwise", **fields}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference_genrm")
    data = copy_data(root)
    return {"model": policy(root / "policy", data), "data": data}


def test_pairs_from_the_genrm(inputs, tmp_path):
    out = tmp_path / "out"
    with FakeOpenAI(reply=copy_judge) as server:
        config = preference.Config(**TRAIN, judge="genrm", genrm=genrm(server.url, both_orders=True))
        result = preference.run(config, inputs, out, StepContext("dpo_genrm"))
        requests = len(server.requests)
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    counts = json.loads((out / "pair_counts.json").read_text())
    train = counts["train"]
    # every pair is one the GenRM decided: the chosen sample repeats the number, the rejected one does not
    assert pairs and all(p["chosen_text"] == p["prompt_id"].split("-")[1] != p["rejected_text"] for p in pairs)
    assert all((p["chosen_reward"], p["rejected_reward"]) == (1.0, 0.0) for p in pairs)
    # two comparisons per prompt, each asked in both orders; what gave no pair is counted
    assert train["compared"] == 2 * (60 - train["too_long"]) and train["pairs"] + train["genrm_ties"] == train["compared"]
    assert not any(k.startswith("genrm_malformed") for k in train)
    assert requests == 2 * (train["compared"] + counts["heldout"]["compared"])
    # DPO on the GenRM's pairs moves held-out pairs the right way, as on the verifier's (measured: 43 training and 24
    # held-out pairs, 77 ties; held-out margin 0.72 with 75% of pairs ranked right; the verifier's pairs: 51, 0.72, 83%)
    assert abs(result["heldout_margin_before"]) < 1e-4
    assert result["heldout_margin_after"] > 0.3 and result["heldout_reward_accuracy_after"] > 0.6
    summary = json.loads((out / "preference.json").read_text())
    assert summary["judge"] == "genrm" and summary["genrm"]["model"] == "genrm-model"
    assert summary["genrm"]["prompt"] == "pairwise" and summary["genrm"]["both_orders"] is True
    assert result["train_pairs"] == len(pairs)


def test_a_garbage_genrm_fails_over_its_error_budget(inputs, tmp_path):
    with FakeOpenAI(reply=lambda prompt: "Both responses have merits.") as server:
        config = preference.Config(**QUICK, judge="genrm", genrm=genrm(server.url, error_budget=0.2))
        with pytest.raises(JudgeBudgetError, match=r"^stages.preference.genrm: (\d+) of \1 judge verdicts malformed "
                                                   r"\(100.0%: no_verdict \1\)"):
            preference.run(config, inputs, tmp_path / "out", StepContext("dpo_genrm"))
    assert not (tmp_path / "out" / "pairs.jsonl").exists() and not (tmp_path / "out" / "model").exists()


def test_genrm_config_is_honoured_or_refused():
    judge = genrm("http://genrm:8000")
    with pytest.raises(ValidationError, match="genrm: set it exactly when judge is 'genrm'"):
        preference.Config(judge="genrm")
    with pytest.raises(ValidationError, match="genrm: set it exactly when judge is 'genrm'"):
        preference.Config(genrm=judge)
    with pytest.raises(ValidationError, match="genrm.mode: the GenRM compares two samples"):
        preference.Config(judge="genrm", genrm={**judge, "mode": "score"})
    with pytest.raises(ValidationError, match="min_reward_gap and reward_weights rank a reward model's scores"):
        preference.Config(judge="genrm", genrm=judge, min_reward_gap=0.5)
    assert preference.Config(judge="genrm", genrm=judge).genrm_files == []
    assert "genrm_files" in preference.Config.external_fields()


def test_pairs_from_responses_read_instead_of_sampled(inputs, tmp_path):
    """Responses given in a file (two per prompt, the right one first or second) are judged by the GenRM in place of
    the policy's samples; prompts without a line give no pair and are counted."""
    train = read_prompts(inputs["data"].path / "prompts.jsonl")[:10]
    heldout = read_prompts(inputs["data"].path / "heldout.jsonl")[:4]
    lines = []
    for i, prompt in enumerate(train + heldout):
        right, wrong = prompt.id.split("-")[1], str(int(prompt.id.split("-")[1]) + 1)
        lines.append({"prompt_id": prompt.id, "responses": [right, wrong] if i % 2 else [wrong, right]})
    file = tmp_path / "responses.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    with FakeOpenAI(reply=copy_judge) as server:
        read = {k: v for k, v in CONFIG.items() if k not in ("max_new_tokens", "samples_per_prompt")}
        config = preference.Config(**{**read, "steps": 4, "checkpoint_interval": 0}, responses_file=str(file),
                                   judge="genrm", genrm=genrm(server.url))
        preference.run(config, inputs, out, StepContext("dpo_read"))
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert [(p["prompt_id"], p["chosen_text"], p["rejected_text"]) for p in pairs] == \
        [(p.id, p.id.split("-")[1], str(int(p.id.split("-")[1]) + 1)) for p in train]
    counts = json.loads((out / "pair_counts.json").read_text())
    assert counts["train"]["no_responses"] == 50 and counts["train"]["samples"] == 20
    assert counts["heldout"]["pairs"] == 4
    with pytest.raises(ValidationError, match="temperature set how the policy samples; with responses_file"):
        preference.Config(responses_file=str(file), temperature=0.7)
    assert preference.Config(responses_file=str(file), seq_len=32).responses_file == str(file)  # no sampling to fit


def test_plan_counts_no_sampling_for_read_responses(tmp_path):
    data = _every_kind(tmp_path)
    data["steps"]["preference"]["config"] = {"seq_len": 128, "max_new_tokens": 32}
    sampled = {s.step: s for s in plan_spec(parse_spec(data)).steps}["preference"]
    (tmp_path / "responses.jsonl").write_text('{"prompt_id": "p", "responses": ["a", "b"]}\n')
    data["steps"]["preference"]["config"] = {"seq_len": 128, "judge": "genrm", "genrm": genrm("http://genrm:8000"),
                                             "responses_file": str(tmp_path / "responses.jsonl")}
    read = {s.step: s for s in plan_spec(parse_spec(data)).steps}["preference"]
    assert 0 < read.flops < sampled.flops
    assert "GenRM" in read.note and "GenRM" not in sampled.note


def test_plan_costs_a_genrm_that_is_the_judge_input_on_its_model(tmp_path):
    """A GenRM with its own endpoint is named as not counted; one that is the `judge` input (here the pretrained model:
    the plan knows its shape) costs its comparisons, twice with both orders."""
    data = _every_kind(tmp_path)
    step = data["steps"]["preference"]
    step["config"] = {"seq_len": 128, "max_new_tokens": 32, "judge": "genrm", "genrm": genrm("http://genrm:8000")}
    step["inputs"] = {k: v for k, v in step["inputs"].items() if k != "reward_model"}
    endpoint = {s.step: s for s in plan_spec(parse_spec(data)).steps}["preference"]
    step["config"]["genrm"] = {"generator": {"kind": "transformers"}, "mode": "pairwise"}
    step["inputs"]["judge"] = "pretrain"
    one_order = {s.step: s for s in plan_spec(parse_spec(data)).steps}["preference"]
    step["config"]["genrm"]["both_orders"] = True
    both = {s.step: s for s in plan_spec(parse_spec(data)).steps}["preference"]
    assert "GenRM" in endpoint.note and "GenRM" not in one_order.note
    assert endpoint.flops < one_order.flops < both.flops
    assert both.flops - endpoint.flops == pytest.approx(2 * (one_order.flops - endpoint.flops))


def test_a_genrm_without_a_model_folder_needs_the_judge_input(inputs, tmp_path):
    """The GenRM is then the step's `judge` input (a spec refuses it unwired: tests/stages/evaluate/test_judge_input.py);
    a run without it stops before the policy loads or trains, naming the input."""
    config = preference.Config(**QUICK, judge="genrm", genrm={"generator": {"kind": "transformers"}, "mode": "pairwise"})
    with pytest.raises(InputError, match=r"needs an input named 'judge' \(a checkpoint artifact\)"):
        preference.run(config, inputs, tmp_path / "out", StepContext("dpo_genrm"))
    assert not (tmp_path / "out").exists()
