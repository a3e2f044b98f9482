"""The SFT stage run for real on CPU: a tiny NemotronH (random init) fine-tuned on procedural arithmetic
conversations in both reasoning modes learns the assistant turns and obeys the reasoning switch on held-out
prompts; the loss counts assistant tokens only; bad data fails with one message; a SIGKILLed run resumes
bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.errors import InputError
from factory.kinds import KINDS
from factory.stages import sft
from factory.stages.sft import stage as sft_stage
from factory.chat.template import encode_chat
from factory.stage import Artifact, StepContext
from factory.train import read_metrics
from factory.train.objectives.chat_lm import ChatLMObjective, chat_example
from factory.train.objectives.causal_lm import IGNORE_INDEX
from tests.kill9 import driver_env
from tests.builders import addition_heldout, additions, conversations

# 60 steps of 8 conversations (~1.8 epochs of 270): seconds on one core, enough to learn the switch
LEARN = dict(steps=60, micro_batch_size=8, lr=3e-3, seq_len=128, checkpoint_interval=0, log_interval=10)


def addition_data(folder, convs):
    """A conversations artifact of `convs` with held-out additions of numbers training never sees."""
    return conversations(folder, convs, heldout=addition_heldout())


@pytest.fixture(scope="module")
def inputs(chat_checkpoint, tmp_path_factory):
    return {"model": chat_checkpoint, "data": addition_data(tmp_path_factory.mktemp("sft_inputs") / "data", additions(150))}


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "out"
    out.mkdir()
    ctx = StepContext("sft")
    metrics = sft.run(sft.Config(**LEARN), inputs, out, ctx)
    return out, metrics, ctx


def test_registry_entry():
    kind = KINDS["sft"]
    assert (kind.package, kind.output, kind.resumable, kind.distributed, kind.registered) == (
        "factory.stages.sft", "checkpoint", True, True, True)
    assert (kind.inputs["model"].kind, kind.inputs["data"].kind) == ("checkpoint", "conversations")


def test_sft_learns_the_answers_and_the_reasoning_switch(trained):
    out, metrics, ctx = trained
    # held-out conversations (prompts training never saw): loss per assistant token falls several-fold
    assert metrics["valid_loss_after"] < 0.25 * metrics["valid_loss_before"], metrics
    # held-out prompts with numbers 50-99 (training used 0-49): greedy answers obey the system prompt
    assert metrics["think_rate_on"] >= 0.95 and metrics["think_rate_off"] <= 0.05, metrics
    assert metrics["truncated_fraction"] == 0.0 and metrics["reasoning_on_fraction"] == 0.5
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "metrics.jsonl", "model", "sft.json"]
    assert json.loads((out / "sft.json").read_text()) == pytest.approx(metrics, nan_ok=True)

    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, LEARN["steps"] + 1))
    # every step trains on assistant tokens only: 8 conversations hold far fewer of them than 8 padded rows
    assert all(0 < r["tokens"] < LEARN["micro_batch_size"] * LEARN["seq_len"] for r in records)
    logged = [m for m, step in ctx.tracker.metrics if step is not None]
    assert len(logged) == LEARN["steps"] // LEARN["log_interval"] and all("loss" in m for m in logged)
    [dataset] = ctx.tracker.datasets
    assert dataset["profile"]["kept"] == metrics["conversations"] and dataset["profile"]["truncated"] == 0


def test_released_model_chats_in_stock_transformers(trained):
    out, _, _ = trained
    tok = AutoTokenizer.from_pretrained(out / "model", local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True).eval()
    assert model.generation_config.eos_token_id == [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    replies = {}
    for thinking in (True, False):
        ids = tok.apply_chat_template([{"role": "user", "content": "What is 61 + 77?"}], add_generation_prompt=True,
                                      enable_thinking=thinking, return_tensors="pt", return_dict=True)["input_ids"]
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=40, do_sample=False)
        replies[thinking] = tok.decode(gen[0, ids.shape[1]:])
    assert replies[True].startswith("<think>\n") and "</think>" in replies[True], replies
    assert replies[False].startswith("The sum is") and "<think>" not in replies[False], replies
    assert replies[False].endswith("<|im_end|>"), replies  # generation stops at the end of the turn


def test_loss_counts_assistant_tokens_only_and_padding_changes_nothing(inputs):
    model_dir = inputs["model"].path / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    conv = additions(1)[0]
    ids, mask = encode_chat(tok, [m.model_dump(exclude_none=True) for m in conv.messages])
    objective = ChatLMObjective(model, "fixture")

    def loss(length: int, pad: int) -> tuple[float, int]:
        row = chat_example(ids, mask, length, pad)
        batch = {k: v[None] for k, v in row.items()}
        assert objective.label_tokens(batch) == sum(mask[1:])
        with torch.no_grad():
            out = objective(batch)
        return float(out.loss_sum), out.tokens

    # by hand: cross entropy of the assistant tokens, each predicted from the tokens before it
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    want = -sum(float(logits[t - 1, ids[t]]) for t in range(1, len(ids)) if mask[t])
    got, n = loss(len(ids), tok.pad_token_id)
    assert n == sum(mask) and got == pytest.approx(want, rel=1e-5)
    # right padding of any length, with any pad id, changes nothing: the model is causal and pads are masked
    assert loss(len(ids) + 17, tok.pad_token_id)[0] == pytest.approx(got, rel=1e-5)
    assert loss(len(ids) + 17, 5)[0] == pytest.approx(got, rel=1e-5)
    row = chat_example(ids, mask, len(ids) + 3, tok.pad_token_id)
    assert row["labels"][: len(ids)][torch.tensor(mask) == 0].eq(IGNORE_INDEX).all()
    assert row["labels"][len(ids):].eq(IGNORE_INDEX).all() and row["attention_mask"].sum() == len(ids)


def test_preflight_fails_batches_that_would_train_on_nothing_or_everything():
    objective = ChatLMObjective(torch.nn.Identity(), "data/train.jsonl")
    ids = torch.arange(10)[None]
    empty = {"input_ids": ids, "labels": torch.full_like(ids, IGNORE_INDEX), "attention_mask": torch.ones_like(ids)}
    with pytest.raises(InputError, match=r"data/train.jsonl: a batch holds no assistant tokens"):
        objective.label_tokens(empty)
    everything = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    with pytest.raises(InputError, match=r"data/train.jsonl: the assistant mask covers every token"):
        objective.label_tokens(everything)
    padded = {**everything, "labels": torch.cat([ids[:, :7], torch.full((1, 3), IGNORE_INDEX)], 1),
              "attention_mask": torch.tensor([[1] * 7 + [0] * 3])}
    with pytest.raises(InputError, match="covers every token"):  # padding does not hide a prompt-less row
        objective.label_tokens(padded)


def test_bad_data_fails_with_one_message_naming_the_set(inputs, tmp_path):
    config = sft.Config(steps=2, micro_batch_size=2, warmup_steps=0, checkpoint_interval=0)
    empty = addition_data(tmp_path / "empty", [])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match=rf"{empty.path / 'train.jsonl'}: no conversations; SFT never trains on nothing"):
        sft.run(config, {"model": inputs["model"], "data": empty}, out, StepContext("sft"))
    with pytest.raises(InputError, match=r"train.jsonl: all \d+ training conversations are longer than seq_len = 8"):
        sft.run(config.model_copy(update={"seq_len": 8}), inputs, out, StepContext("sft"))
    off_only = addition_data(tmp_path / "off", [c for c in additions(10) if c.reasoning == "off"])
    with pytest.raises(InputError, match=r"no conversations in reasoning mode 'on', but reasoning_on_fraction = 0.5"):
        sft.run(config.model_copy(update={"reasoning_on_fraction": 0.5}), {**inputs, "data": off_only}, out,
                StepContext("sft"))
    # a record without its answer is refused by the records reader, naming file and line
    bad = tmp_path / "bad"
    addition_data(bad, additions(2))
    lines = (bad / "train.jsonl").read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "answer": ""})
    (bad / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"train.jsonl:2: record 'add-0-off': .*answer"):
        sft.run(config, {**inputs, "data": Artifact(bad, {})}, out, StepContext("sft"))
    assert not (out / "model").exists()  # nothing half-written


def test_overlong_conversations_are_skipped_and_counted(inputs, tmp_path):
    tok = AutoTokenizer.from_pretrained(inputs["model"].path / "model")
    convs = additions(20)
    lengths = {c.id: len(encode_chat(tok, [m.model_dump(exclude_none=True) for m in c.messages])[0]) for c in convs}
    off_max = max(n for cid, n in lengths.items() if cid.endswith("-off"))
    on_min = min(n for cid, n in lengths.items() if cid.endswith("-on"))
    assert off_max < on_min  # a think block makes every "on" conversation longer
    data = addition_data(tmp_path / "data", convs)
    out = tmp_path / "out"
    out.mkdir()
    config = sft.Config(steps=2, micro_batch_size=2, warmup_steps=0, seq_len=off_max, checkpoint_interval=0, valid_fraction=0.0,
                        switch_prompts=0)
    metrics = sft.run(config, {"model": inputs["model"], "data": data}, out, StepContext("sft"))
    assert metrics["truncated_fraction"] == 0.5 and metrics["conversations"] == 20


def test_reasoning_mix_subsamples_the_larger_mode():
    convs = additions(100)  # 100 on, 100 off
    mixed = sft_stage.mix_reasoning(convs, 0.25, seed=0, where="x")
    on = sum(c.reasoning == "on" for c in mixed)
    assert (on, len(mixed) - on) == (33, 100)
    assert [c.id for c in mixed] == [c.id for c in convs if c in mixed]  # order kept
    assert sft_stage.mix_reasoning(convs, 0.25, seed=0, where="x") == mixed  # seeded
    assert sft_stage.mix_reasoning(convs, None, seed=0, where="x") == convs
    train, valid = sft_stage.split_heldout(convs, 0.2, seed=0)
    assert 20 <= len(valid) <= 60 and len(train) + len(valid) == 200
    held = {c.messages[1].content for c in valid}
    assert not held & {c.messages[1].content for c in train}  # a prompt's two modes stay on one side



def test_transformers_serve_obeys_the_reasoning_switch(trained, tmp_path):
    """`transformers serve MODEL --reasoning on` on the fine-tuned folder: the think block comes back as
    `reasoning_content` (the tokenizer's response template), and a request with `enable_thinking: false`
    gets an answer without one; both stop at the end of the turn."""
    import urllib.request

    from tests.spine import transformers_serve

    out, _, _ = trained
    model = str(out / "model")
    with transformers_serve(model, tmp_path / "serve.log", "--reasoning", "on", env=driver_env()) as url:

        def chat(**extra) -> dict:
            body = {"model": model, "messages": [{"role": "user", "content": "What is 61 + 77?"}], "max_tokens": 40,
                    "temperature": 0, **extra}
            request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as r:
                return json.loads(r.read())["choices"][0]

        on, off = chat(), chat(chat_template_kwargs={"enable_thinking": False})
    assert on["message"]["reasoning_content"] and on["message"]["content"].startswith("The sum is"), on
    assert not off["message"].get("reasoning_content") and off["message"]["content"].startswith("The sum is"), off
    assert on["finish_reason"] == off["finish_reason"] == "stop"
