"""Real, tiny inputs for the SFT tests: procedural arithmetic conversations in both reasoning modes (a
conversations artifact written with `factory.chat.records`), and a tiny-preset checkpoint (random init)
whose tokenizer the tokenize stage's code trains, chat markers and template included."""

from __future__ import annotations

import random
from pathlib import Path

from factory.chat.records import (
    HELDOUT, PROMPTS, STATS, TRAIN, Conversation, DataStats, Message, Prompt, assistant_content, system_prompt,
    write_records, write_stats,
)
from factory.stage import Artifact

TEACHER = "procedural-solver"


def _question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def conversation(i: int, a: int, b: int, mode: str) -> Conversation:
    thinking = f"{a} plus {b} is {a + b}." if mode == "on" else None
    return Conversation(
        id=f"add-{i}-{mode}", task="addition", verifier="math", answer=str(a + b), reasoning=mode, teacher=TEACHER,
        messages=[Message(role="system", content=system_prompt(mode)), Message(role="user", content=_question(a, b)),
                  Message(role="assistant", content=assistant_content(f"The sum is {a + b}.", thinking))])


def prompt(i: int, a: int, b: int) -> Prompt:
    return Prompt(id=f"heldout-{i}", task="addition", verifier="math", answer=str(a + b),
                  messages=[Message(role="user", content=_question(a, b))])


def conversations(n_prompts: int, seed: int = 0) -> list[Conversation]:
    """Both modes of `n_prompts` additions of two numbers below 50."""
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        a, b = rng.randrange(50), rng.randrange(50)
        out += [conversation(i, a, b, "on"), conversation(i, a, b, "off")]
    return out


def write_data(folder: Path, train: list[Conversation], heldout: list[Prompt] | None = None) -> Artifact:
    """A conversations artifact folder; held-out prompts use numbers 50-99, which training never sees."""
    folder.mkdir(parents=True, exist_ok=True)
    if heldout is None:
        rng = random.Random(1)
        heldout = [prompt(i, rng.randrange(50, 100), rng.randrange(50, 100)) for i in range(40)]
    write_records(folder / TRAIN, train)
    write_records(folder / PROMPTS, [Prompt(**c.model_dump(exclude={"messages", "reasoning", "teacher"}),
                                            messages=c.messages[:2]) for c in train])
    write_records(folder / HELDOUT, heldout)
    write_stats(folder / STATS, DataStats(prompts=len(train), heldout=len(heldout), generated=len(train),
                                          kept=len(train), teachers=[TEACHER]))
    return Artifact(folder, {"fingerprint": "c" * 64, "kind": "conversations", "stage": "posttrain_data"})


def write_checkpoint(folder: Path, seed: int = 0) -> Artifact:
    """`model/`: a tiny-preset NemotronH (random init) and a byte-level BPE tokenizer from the tokenize stage's
    code, trained on arithmetic text, with the chat markers and template."""
    import torch

    from factory.model import build_model
    from factory.model.presets import tiny
    from factory.chat.template import with_chat_template
    from factory.stages.tokenize.bpe import as_transformers, train_bpe
    from factory.stages.tokenize.config import Config

    texts = ["\n".join(["system", m.content]) if m.role == "system" else f"{m.role}\n{m.content}"
             for c in conversations(300, seed=99) for m in c.messages]
    config = Config(vocab_size=600)
    tokenizer = with_chat_template(as_transformers(train_bpe(iter(texts), len(texts), config), config))
    torch.manual_seed(seed)
    model = build_model(tiny(), len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return Artifact(folder, {"fingerprint": "b" * 64, "kind": "checkpoint", "stage": "pretrain"})
