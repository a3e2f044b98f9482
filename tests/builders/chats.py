"""The conversations builder (the post-training data stage's layout: train.jsonl, prompts.jsonl, heldout.jsonl,
stats.json) and the three tiny chat data sets the post-training tests learn, each with the chat tokenizer made for it:

- additions: "What is a + b?" in both reasoning modes, numbers below 50 (held out: 50-99), for SFT;
- choice prompts: "Question i: pick a letter." with gold letter B, for RL's `choice` verifier;
- the copy task: "Repeat 47." -> "47", checked by the math verifier; held-out numbers never trained on, for
  preference and reward-model training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.chat.records import (
    HELDOUT,
    PROCEDURAL_TEACHER,
    PROMPTS,
    STATS,
    TRAIN,
    Conversation,
    DataStats,
    Message,
    Prompt,
    assistant_content,
    system_prompt,
    write_records,
    write_stats,
)
from factory.jsonl import write_objects
from factory.stage import Artifact
from tests.builders.manifests import publish
from tests.builders.tokenizers import tokenizer


def conversations(folder: Path, train: Sequence[Conversation] = (), prompts: Sequence[Prompt | dict] | None = None,
                  heldout: Sequence[Prompt | dict] = ()) -> Artifact:
    """A conversations artifact. `prompts` default to the training conversations' system and user turns; prompts given
    as dicts are written as they are (a bad record on purpose)."""
    folder = Path(folder)
    if prompts is None:
        prompts = [Prompt(**c.model_dump(exclude={"messages", "reasoning", "teacher"}), messages=c.messages[:2]) for c in train]
    write_records(folder / TRAIN, train)
    write_objects(folder / PROMPTS, prompts)
    write_objects(folder / HELDOUT, heldout)
    write_stats(folder / STATS, DataStats(prompts=len(prompts), heldout=len(heldout), generated=len(train), kept=len(train),
                                          teachers=sorted({c.teacher for c in train})))
    return publish(folder, "posttrain_data", "conversations")


# ---------------------------------------------------------------------------------------------- additions (SFT)

def _addition(i: int, a: int, b: int, mode: str) -> Conversation:
    thinking = f"{a} plus {b} is {a + b}." if mode == "on" else None
    return Conversation(
        id=f"add-{i}-{mode}", task="addition", verifier="math", answer=str(a + b), reasoning=mode, teacher=PROCEDURAL_TEACHER,
        messages=[Message(role="system", content=system_prompt(mode)), Message(role="user", content=f"What is {a} + {b}?"),
                  Message(role="assistant", content=assistant_content(f"The sum is {a + b}.", thinking))])


def additions(n_prompts: int, seed: int = 0) -> list[Conversation]:
    """Both modes of `n_prompts` additions of two numbers below 50."""
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        a, b = rng.randrange(50), rng.randrange(50)
        out += [_addition(i, a, b, "on"), _addition(i, a, b, "off")]
    return out


def addition_heldout(n: int = 40, seed: int = 1) -> list[Prompt]:
    """Additions of numbers 50-99, which training never sees."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randrange(50, 100), rng.randrange(50, 100)
        out.append(Prompt(id=f"heldout-{i}", task="addition", verifier="math", answer=str(a + b),
                          messages=[Message(role="user", content=f"What is {a} + {b}?")]))
    return out


def addition_tokenizer():
    """The chat tokenizer trained on the turns of 300 additions."""
    texts = [f"{m.role}\n{m.content}" for c in additions(300, seed=99) for m in c.messages]
    return tokenizer("chat", texts, vocab_size=600)


# ---------------------------------------------------------------------------------------------- choice prompts (RL)

def choice_prompt(i: int, verifier: str = "choice") -> Prompt:
    answer = {"gold": "B", "options": ["two", "three", "five", "seven"]} if verifier == "choice" else str(i % 7)
    return Prompt(id=f"p{i}", task="toy", verifier=verifier, answer=answer,
                  messages=[Message(role="user", content=f"Question {i}: pick a letter.")])


def choice_tokenizer():
    texts = ["What is 2+3? Two plus three is five, so the answer is 5. Pick A, B, C or D.",
             "Answer with the letter. The answer is B. Call the weather tool with the city name."] * 40
    return tokenizer("chat", texts, vocab_size=300)


# ---------------------------------------------------------------------------------------------- copy task (preference)

# The numbers 10..99 split: held-out numbers never appear in prompts.jsonl or train.jsonl. SFT also sees three-digit
# numbers, so a policy learns copying as a rule rather than a table of answers.
EXTRA_COPIES = random.Random(1).sample(range(100, 1000), 300)


def _copy_prompt(n: int, split: str) -> dict[str, Any]:
    return {"id": f"{split}-{n}", "task": "repeat_number", "verifier": "math", "answer": str(n),
            "messages": [{"role": "user", "content": f"Repeat {n}."}], "meta": {"n": n}}


def copy_task() -> tuple[list[Conversation], list[dict[str, Any]], list[dict[str, Any]]]:
    """(training conversations, reasoning off; training prompts; held-out prompts of other numbers)."""
    numbers = list(range(10, 100))
    random.Random(0).shuffle(numbers)
    train, heldout = numbers[:60], numbers[60:]
    convs = [Conversation.model_validate({**_copy_prompt(n, "train"), "reasoning": "off", "teacher": PROCEDURAL_TEACHER,
                                          "messages": [{"role": "system", "content": system_prompt("off")},
                                                       {"role": "user", "content": f"Repeat {n}."},
                                                       {"role": "assistant", "content": str(n)}]})
             for n in train + EXTRA_COPIES]
    return convs, [_copy_prompt(n, "train") for n in train], [_copy_prompt(n, "heldout") for n in heldout]


def copy_tokenizer():
    """No digits in its corpus: every digit stays its own byte token, so an answer's digits are the very tokens of the
    prompt and copying them is a rule a model can apply to numbers it never saw."""
    return tokenizer("chat", ["Repeat. detailed thinking off system user assistant"] * 50, vocab_size=320)
