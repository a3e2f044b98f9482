"""Tiny real inputs for the RL tests: a NemotronH policy whose tokenizer carries the chat template, and a
conversations artifact written with the records schema (`factory.chat.records`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from factory.chat.template import CHAT_TOKENS, with_chat_template
from factory.chat.records import DataStats, Message, Prompt, write_records, write_stats
from factory.stage import Artifact

TEXTS = ["What is 2+3? Two plus three is five, so the answer is 5. Pick A, B, C or D.",
         "Answer with the letter. The answer is B. Call the weather tool with the city name."] * 40


def tokenizer():
    from factory.stages.tokenize.bpe import as_transformers, train_bpe
    from factory.stages.tokenize.config import Config

    config = Config(vocab_size=300, extra_special_tokens=CHAT_TOKENS)
    return with_chat_template(as_transformers(train_bpe(iter(TEXTS), len(TEXTS), config), config))


def policy_artifact(folder: Path, seed: int = 0) -> Artifact:
    """A randomly initialised tiny NemotronH in `folder/model`, saved with the chat tokenizer."""
    from factory.model.build import build_model
    from factory.model.presets import tiny

    tok = tokenizer()
    torch.manual_seed(seed)
    model = build_model(tiny(), len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    return Artifact(folder, {"fingerprint": "1" * 64, "kind": "checkpoint", "stage": "sft"})


def letter_policy_artifact(folder: Path, steps: int = 30, seed: int = 0) -> Artifact:
    """A tiny policy SFT-trained to answer "Question i: pick X." with a uniformly random letter and then end
    its turn: it follows the format but is right a quarter of the time, so RL has something to raise (the
    toy task's gold letter is always B)."""
    import random

    from factory.model.checkpoints import load_model, save_model
    from factory.chat.template import encode_chat
    from factory.train.config import TrainConfig
    from factory.train.objectives.causal_lm import IGNORE_INDEX, CausalLMObjective
    from factory.train.trainer import Trainer

    base = policy_artifact(folder / "base", seed)
    tok = tokenizer()
    rng = random.Random(seed)
    samples = []
    for i in range(64):
        chat = [*choice_prompt(i).chat("off"), {"role": "assistant", "content": rng.choice("ABCD")}]
        ids, mask = encode_chat(tok, chat)
        ids = torch.tensor(ids)
        samples.append({"input_ids": ids, "labels": torch.where(torch.tensor(mask) == 1, ids, IGNORE_INDEX)})
    width = max(len(s["input_ids"]) for s in samples)
    pad = {"input_ids": tok.pad_token_id, "labels": IGNORE_INDEX}
    samples = [{k: torch.nn.functional.pad(v, (0, width - len(v)), value=pad[k]) for k, v in s.items()} for s in samples]
    model = load_model(base.path / "model").train()
    config = TrainConfig(steps=steps, micro_batch_size=8, lr=1e-2, warmup_steps=3, decay_fraction=0.2, seed=seed)
    torch.manual_seed(seed)
    Trainer(CausalLMObjective(model), samples, config).fit()
    save_model(model.eval(), folder / "model", tokenizer_from=base.path / "model")
    return Artifact(folder, {"fingerprint": "3" * 64, "kind": "checkpoint", "stage": "sft"})


def choice_prompt(i: int, verifier: str = "choice") -> Prompt:
    gold = "B"
    answer = {"gold": gold, "options": ["two", "three", "five", "seven"]} if verifier == "choice" else str(i % 7)
    return Prompt(id=f"p{i}", task="toy", verifier=verifier, answer=answer,
                  messages=[Message(role="user", content=f"Question {i}: pick a letter.")])


def conversations_artifact(folder: Path, prompts: list[Prompt] | list[dict], heldout: list[Prompt] = ()) -> Artifact:
    """A conversations folder; `prompts` may be raw dicts (to write malformed records on purpose)."""
    folder.mkdir(parents=True, exist_ok=True)
    if prompts and isinstance(prompts[0], dict):
        (folder / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    else:
        write_records(folder / "prompts.jsonl", prompts)
    write_records(folder / "heldout.jsonl", heldout)
    (folder / "train.jsonl").write_text("")
    write_stats(folder / "stats.json", DataStats(prompts=len(prompts), generated=0, kept=0))
    return Artifact(folder, {"fingerprint": "2" * 64, "kind": "conversations", "stage": "posttrain_data"})


__all__ = ["choice_prompt", "conversations_artifact", "letter_policy_artifact", "policy_artifact", "tokenizer"]
