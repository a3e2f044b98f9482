"""Tiny real inputs for the RL tests: a NemotronH policy whose tokenizer carries the chat template, and a
conversations artifact written with the records schema (`factory.posttrain.records`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from factory.posttrain.chat import CHAT_TOKENS, with_chat_template
from factory.posttrain.records import DataStats, Message, Prompt, system_prompt, write_records, write_stats
from factory.stage import Artifact

TEXTS = ["What is 2+3? Two plus three is five, so the answer is 5. Pick A, B, C or D.",
         "Answer with the letter. The answer is B. Call the weather tool with the city name."] * 40


def tokenizer():
    from factory.tokenize.bpe import as_transformers, train_bpe
    from factory.tokenize.config import Config

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


def choice_prompt(i: int, verifier: str = "choice") -> Prompt:
    gold = "ABCD"[i % 4]
    answer = {"gold": gold, "options": ["two", "three", "five", "seven"]} if verifier == "choice" else str(i % 7)
    return Prompt(id=f"p{i}", task="toy", verifier=verifier, answer=answer,
                  messages=[Message(role="user", content=f"Question {i}: pick {gold}.")])


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


__all__ = ["choice_prompt", "conversations_artifact", "policy_artifact", "system_prompt", "tokenizer"]
