"""The preference stage end to end on a tiny policy: pairs from its own samples judged by the math verifier, DPO
and RPO each raise the implicit-reward margin on held-out pairs (prompts never trained on), an attempt killed
mid-run resumes exactly, and a prompt set that gives no pair (or lacks answers) fails with one message."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from factory.errors import InputError
from factory.stages import preference
from factory.stage import StepContext
from factory.chat.records import read_conversations
from factory.chat.template import encode_chat
from factory.train.config import TrainConfig
from factory.train.objectives.causal_lm import IGNORE_INDEX
from tests.builders import checkpoint, conversations, copy_task, copy_tokenizer

# Small enough for seconds on one core; lr is high because the run is 40 steps long.
CONFIG = dict(steps=40, lr=2e-3, beta=0.1, seq_len=48, max_new_tokens=5, samples_per_prompt=4, micro_batch_size=8,
              warmup_steps=0, decay_fraction=0.0, heldout_prompts=30, checkpoint_interval=4, seed=0)


PAIR_FILES = ("pairs.jsonl", "heldout_pairs.jsonl", "pair_counts.json")


def policy(folder, data, steps: int = 150, seed: int = 0, lr: float = 6e-3):
    """The tiny preset fine-tuned on the copy task's train.jsonl (loss on the assistant tokens) for `steps` steps: it has
    learnt the answer format and some numbers, so its samples are a mix of right and wrong. Copying generalises to
    numbers never trained on, which is what lets preference training move the margin on held-out prompts."""
    tokenizer = copy_tokenizer()
    encoded = [encode_chat(tokenizer, [m.model_dump(exclude_none=True) for m in c.messages])
               for c in read_conversations(data.path / "train.jsonl")]
    width = max(len(ids) for ids, _ in encoded)
    samples = []
    for ids, mask in encoded:
        ids_t = F.pad(torch.tensor(ids), (0, width - len(ids)), value=tokenizer.pad_token_id)
        labels = torch.where(F.pad(torch.tensor(mask), (0, width - len(mask))).bool(), ids_t, IGNORE_INDEX)
        samples.append({"input_ids": ids_t, "labels": labels})
    config = TrainConfig(seq_len=width, micro_batch_size=16, steps=steps, lr=lr, warmup_steps=5, decay_fraction=0.0,
                         checkpoint_interval=0, seed=seed)
    return checkpoint(folder, tokenizer, seed=seed, step="sft", inputs={"data": data}, train=config, samples=samples,
                      token_ids={"eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                 "pad_token_id": tokenizer.pad_token_id})


def copy_data(folder, prompts=None):
    """The copy task as a conversations artifact; `prompts` in place of its training prompts."""
    train, train_prompts, heldout = copy_task()
    return conversations(folder / "conversations", train, train_prompts if prompts is None else prompts, heldout)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference")
    data = copy_data(root)
    return {"model": policy(root / "policy", data), "data": data}


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    """One DPO and one RPO run of the stage on the same inputs: {loss: (result, output folder)}.

    The same policy, prompts and seed give the same samples, so the RPO run starts from the pairs the DPO run
    made (copied in, as an attempt that was killed after writing them would find them) instead of sampling again.
    """
    out = {}
    for loss in ("dpo", "rpo"):
        folder = tmp_path_factory.mktemp(loss) / "out"
        if loss == "rpo":
            folder.mkdir()
            for name in PAIR_FILES:
                shutil.copy(out["dpo"][1] / name, folder / name)
        result = preference.run(preference.Config(loss=loss, **CONFIG), inputs, folder, StepContext(loss))
        out[loss] = (result, folder)
    return out


@pytest.mark.parametrize("loss", ["dpo", "rpo"])
def test_raises_the_preference_margin_on_heldout_pairs(runs, loss):
    result, folder = runs[loss]
    # pairs: verified (chosen) against failed (rejected) samples of the policy itself
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == result["train_pairs"] >= 25
    assert all(p["chosen_text"] == p["prompt_id"].split("-")[1] != p["rejected_text"] for p in pairs)
    assert all(p["chosen_reward"] == 1.0 and p["rejected_reward"] == 0.0 for p in pairs)
    heldout = [json.loads(line) for line in (folder / "heldout_pairs.jsonl").read_text().splitlines()]
    assert not {p["prompt_id"] for p in heldout} & {p["prompt_id"] for p in pairs}
    assert result["heldout_pairs"] >= 10
    # before training the policy is its own reference: margin 0; after, chosen answers gain on rejected ones
    assert abs(result["heldout_margin_before"]) < 1e-4
    # (measured: 37 training and 17 held-out pairs; held-out margin DPO 0.37 with 76% of pairs ranked right, RPO 0.38
    # and 82%; log-prob gap 1.1 -> 4.8 and 4.9)
    assert result["heldout_margin_after"] > 0.15
    assert result["heldout_reward_accuracy_after"] > 0.55
    assert result["heldout_logp_gap_after"] > result["heldout_logp_gap_before"] + 2.0
    # logged per step: loss, margin and reward accuracy; the training margin rises too
    records = [json.loads(line) for line in (folder / "preference.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 41))
    assert records[0]["margin"] == pytest.approx(0.0, abs=1e-4)
    assert sum(r["margin"] for r in records[-4:]) / 4 > 0.2
    assert (folder / "preference.png").stat().st_size > 1000
    assert (folder / "model" / "config.json").is_file() and (folder / "model" / "tokenizer.json").is_file()
    assert not (folder / "checkpoints").exists()


def test_no_pair_fails_naming_the_prompt_set(inputs, tmp_path):
    # answers the policy never writes: every sample fails, so no prompt has a verified one
    prompts = [{"id": f"p{n}", "task": "repeat_number", "verifier": "math", "answer": "123456",
                "messages": [{"role": "user", "content": f"Repeat {n}."}]} for n in (11, 12, 13)]
    data = copy_data(tmp_path, prompts)
    config = preference.Config(**{**CONFIG, "samples_per_prompt": 2, "heldout_prompts": 0})
    with pytest.raises(InputError, match=r"conversations/prompts\.jsonl: no preference pair from 3 prompts x 2 samples "
                                         r"\(.*verified 0.*none_verified 3"):
        preference.run(config, {"model": inputs["model"], "data": data}, tmp_path / "out", StepContext("dpo"))
    assert not (tmp_path / "out" / "model").exists() and not (tmp_path / "out" / "pairs.jsonl").exists()


def test_a_prompt_without_answer_fails_naming_file_and_line(inputs, tmp_path):
    prompts = [{"id": "ok", "task": "t", "verifier": "math", "answer": "1", "messages": [{"role": "user", "content": "1"}]},
               {"id": "bad", "task": "t", "verifier": "math", "messages": [{"role": "user", "content": "2"}]}]
    data = copy_data(tmp_path, prompts)
    with pytest.raises(InputError, match=r"prompts\.jsonl:2: record 'bad': lacks its answer"):
        preference.run(preference.Config(**CONFIG), {"model": inputs["model"], "data": data}, tmp_path / "out",
                       StepContext("dpo"))


def test_config_checks():
    with pytest.raises(ValueError, match="max_new_tokens"):
        preference.Config(seq_len=32, max_new_tokens=32)
    assert preference.Config(judge="reward_model").required_inputs() == {"reward_model"}
    assert preference.Config().required_inputs() == set()
