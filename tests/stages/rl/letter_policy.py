"""RL's input policy: the tiny preset SFT-trained to answer "Question i: pick a letter." with a uniformly random letter
and then end its turn. It follows the format but is right a quarter of the time (the toy task's gold letter is always
B), so GRPO's groups hold rewards that differ and RL has something to raise."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from factory.chat.template import encode_chat
from factory.stage import Artifact
from factory.train.config import TrainConfig
from factory.train.objectives.causal_lm import IGNORE_INDEX
from tests.builders import checkpoint, choice_prompt, choice_tokenizer


def letter_policy(folder: Path, steps: int = 30, seed: int = 0) -> Artifact:
    tok = choice_tokenizer()
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
    config = TrainConfig(steps=steps, micro_batch_size=8, lr=1e-2, warmup_steps=3, decay_fraction=0.2, seed=seed)
    return checkpoint(folder, tok, seed=seed, step="sft", train=config, samples=samples)
