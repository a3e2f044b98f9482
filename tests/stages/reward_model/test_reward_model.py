"""The reward_model stage on the shipped example set: the head learns the attribute scores, the saved folder loads
with stock transformers + safetensors and gives the same scores, and the preference stage pairs samples by it."""

from __future__ import annotations

import json

import pytest
import torch

from factory.errors import InputError
from factory.stages import preference, reward_model
from factory.stages.reward_model.stage import read_scored
from factory.stage import StepContext
from factory.model.reward_head import HEAD_WEIGHTS, encode_exchange, load_reward_model
from tests.builders import checkpoint, conversations, copy_task, copy_tokenizer, publish
from tests.spine import ROOT

EXAMPLE = ROOT / "examples" / "reward_model" / "scored_responses.jsonl"
CONFIG = dict(steps=40, lr=3e-3, micro_batch_size=8, warmup_steps=2, decay_fraction=0.0, seq_len=128,
              checkpoint_interval=0, valid_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    tok = copy_tokenizer()  # the backbone: a freshly initialised tiny NemotronH that ends its turns with <|im_end|>
    base = checkpoint(root / "base", tok, token_ids={"eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
                                                      "pad_token_id": tok.pad_token_id})
    result = reward_model.run(reward_model.Config(data=str(EXAMPLE), **CONFIG), {"model": base}, root / "out",
                              StepContext("reward_model"))
    return result, publish(root / "out", "reward_model", "checkpoint", inputs={"model": base}), base


def test_learns_the_attribute_scores(trained):
    result, reward, _ = trained
    out = reward.path
    assert result["too_long"] == 0 and result["records"] == 80 and result["valid_records"] == 16 and result["train_records"] == 64
    # held-out responses: the error falls by more than half, and verbosity and coherence (visible in the text) are
    # ranked well (measured: mse 8.3 -> 1.3; Pearson verbosity 0.92, coherence 0.98, complexity 0.89; helpfulness
    # and correctness, which need the sums checked, only 0.4)
    assert result["valid_mse_after"] < 0.3 * result["valid_mse_before"]
    assert result["valid_pearson_verbosity"] > 0.8 and result["valid_pearson_coherence"] > 0.8
    summary = json.loads((out / "reward_model.json").read_text())
    assert summary["attributes"] == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]


def test_saved_folder_loads_with_transformers_and_safetensors(trained):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, reward, _ = trained
    folder = reward.path / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = encode_exchange(tokenizer, "Repeat 42.", "Well, let me think about it, the answer is 42, as you can see.")
    backbone = AutoModelForCausalLM.from_pretrained(folder).eval()
    head = load_file(folder / HEAD_WEIGHTS)
    with torch.no_grad():
        hidden = backbone(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
    by_hand = hidden @ head["weight"].T + head["bias"]
    torch.testing.assert_close(load_reward_model(folder).score([ids])[0], by_hand, rtol=1e-4, atol=1e-4)
    assert json.loads((folder / "reward_head.json").read_text())["pooling"] == "last_token"


def test_preference_stage_pairs_samples_by_the_reward_model(trained, tmp_path):
    _, reward, base = trained
    out = reward.path
    data = conversations(tmp_path / "conversations", *copy_task())
    config = preference.Config(loss="rpo", judge="reward_model", reward_weights={"helpfulness": 1.0, "verbosity": -0.5},
                               steps=3, lr=1e-3, warmup_steps=0, decay_fraction=0.0, seq_len=48, max_new_tokens=5,
                               samples_per_prompt=3, max_prompts=4, heldout_prompts=0, micro_batch_size=2,
                               checkpoint_interval=0)
    inputs = {"model": base, "data": data, "reward_model": reward}
    result = preference.run(config, inputs, tmp_path / "pref", StepContext("rpo"))
    pairs = [json.loads(line) for line in (tmp_path / "pref" / "pairs.jsonl").read_text().splitlines()]
    assert result["train_pairs"] == len(pairs) == 4  # one pair per prompt: best against worst sample
    rm = load_reward_model(out / "model")
    tokenizer = copy_tokenizer()
    prompts = {p["id"]: p for p in map(json.loads, (data.path / "prompts.jsonl").read_text().splitlines())}
    for pair in pairs:
        chat = [{"role": "system", "content": "detailed thinking off"}, *prompts[pair["prompt_id"]]["messages"]]
        scores = rm.score([encode_exchange(tokenizer, chat, pair[f"{side}_text"]) for side in ("chosen", "rejected")])
        expected = (scores * torch.tensor([1.0, 0, 0, 0, -0.5])).sum(dim=1)
        assert pair["chosen_reward"] == pytest.approx(float(expected[0]), abs=1e-4)
        assert pair["rejected_reward"] == pytest.approx(float(expected[1]), abs=1e-4)
        assert pair["chosen_reward"] > pair["rejected_reward"]
    assert (tmp_path / "pref" / "model" / "config.json").is_file()


def test_bad_records_name_file_and_line(tmp_path):
    bad = tmp_path / "scored.jsonl"
    bad.write_text('{"prompt": "a", "response": "b", "helpfulness": 1, "correctness": 1, "coherence": 1, '
                   '"complexity": 1, "verbosity": 1}\n{"prompt": "a", "response": "b", "helpfulness": 1}\n')
    with pytest.raises(InputError, match=r"scored\.jsonl:2: attributes \['correctness', 'coherence', 'complexity', "
                                         r"'verbosity'\] missing"):
        read_scored(bad, ["helpfulness", "correctness", "coherence", "complexity", "verbosity"])
    with pytest.raises(InputError, match="no such file"):
        read_scored(tmp_path / "absent.jsonl", ["helpfulness"])
