"""Instruction following with verifiable constraints, IFEval-style: a request plus constraints a program checks.

    tasks = instruction_tasks(size=100, seed=0, constraints=2)     # [(id, prompt text, [constraint, ...]), ...]
    instruction_reward(reply, constraints)                          # share of the constraints the final answer meets

A constraint is a JSON-able dict `{"kind": ..., ...}`; each kind is one line of the prompt and one check on the
reply's final answer (the text after `</think>`, as every verifier reads it):

| kind | parameters | the prompt says | met when |
|---|---|---|---|
| max_words | n | Answer in at most n words. | the answer has 1..n whitespace-separated words |
| min_words | n | Answer in at least n words. | it has n or more |
| include | words | Include the words w1, w2. | each word appears (case-insensitive, whole word) |
| exclude | words | Do not use the word w. | none appears |
| bullets | n | Answer with exactly n bullet points, each line starting with '* '. | exactly n lines start with '* ' |
| lowercase | - | Write your whole answer in lowercase letters. | it has letters and none is uppercase |
| end_with | phrase | End your answer with the exact phrase "p". | it ends with p (trailing space ignored) |
| json | - | Answer with a JSON object only. | it parses as a JSON object (a ```json fence around it allowed) |

The reward is the share of a prompt's constraints met (IFEval's loose per-instruction accuracy is the mean of
the same checks); with one constraint per prompt it is binary.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from factory.chat.thinking import final_answer

__all__ = ["KINDS", "check_constraint", "describe", "instruction_reward", "instruction_tasks"]

KINDS = ("max_words", "min_words", "include", "exclude", "bullets", "lowercase", "end_with", "json")

TOPICS = ("the sea", "a city at night", "your favourite tool", "how bread is made", "a quiet morning", "the moon",
          "learning to swim", "a mountain walk", "why people keep diaries", "a small garden", "trains", "the rain")
WORDS = ("blue", "river", "light", "stone", "window", "paper", "green", "clock", "bridge", "salt", "cloud", "music")
ENDINGS = ("Is there anything else?", "That is all.", "Thank you.")

_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```$", re.DOTALL)


def describe(constraint: dict[str, Any]) -> str:
    """The prompt's line for `constraint`."""
    kind = constraint["kind"]
    if kind == "max_words":
        return f"Answer in at most {constraint['n']} words."
    if kind == "min_words":
        return f"Answer in at least {constraint['n']} words."
    if kind == "include":
        return f"Include the words {', '.join(constraint['words'])}."
    if kind == "exclude":
        return f"Do not use the word {constraint['words'][0]}."
    if kind == "bullets":
        return f"Answer with exactly {constraint['n']} bullet points, each line starting with '* '."
    if kind == "lowercase":
        return "Write your whole answer in lowercase letters."
    if kind == "end_with":
        return f'End your answer with the exact phrase "{constraint["phrase"]}".'
    if kind == "json":
        return "Answer with a JSON object only."
    raise ValueError(f"unknown constraint kind {kind!r}; known: {list(KINDS)}")


def check_constraint(answer: str, constraint: dict[str, Any]) -> bool:
    """Whether the final answer `answer` meets `constraint` (see the module docstring's table)."""
    kind, text = constraint["kind"], answer.strip()
    words = text.split()
    if kind == "max_words":
        return 0 < len(words) <= constraint["n"]
    if kind == "min_words":
        return len(words) >= constraint["n"]
    if kind in ("include", "exclude"):
        found = [re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) is not None for w in constraint["words"]]
        return all(found) if kind == "include" else not any(found)
    if kind == "bullets":
        return sum(line.lstrip().startswith("* ") for line in text.splitlines()) == constraint["n"]
    if kind == "lowercase":
        return any(c.isalpha() for c in text) and text == text.lower()
    if kind == "end_with":
        return text.endswith(constraint["phrase"])
    if kind == "json":
        fenced = _FENCE.match(text)
        try:
            return isinstance(json.loads(fenced.group(1) if fenced else text), dict)
        except ValueError:
            return False
    raise ValueError(f"unknown constraint kind {kind!r}; known: {list(KINDS)}")


def instruction_reward(reply: str, constraints: Sequence[dict[str, Any]]) -> float:
    """The share of `constraints` the reply's final answer meets."""
    answer = final_answer(reply)
    return sum(check_constraint(answer, c) for c in constraints) / len(constraints)


def _constraint(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "max_words":
        return {"kind": kind, "n": rng.choice((5, 10, 20, 40))}
    if kind == "min_words":
        return {"kind": kind, "n": rng.choice((3, 10, 30))}
    if kind == "include":
        return {"kind": kind, "words": rng.sample(WORDS, rng.choice((1, 2)))}
    if kind == "exclude":
        return {"kind": kind, "words": [rng.choice(WORDS)]}
    if kind == "bullets":
        return {"kind": kind, "n": rng.choice((2, 3, 4))}
    if kind == "end_with":
        return {"kind": kind, "phrase": rng.choice(ENDINGS)}
    return {"kind": kind}


# kinds that contradict each other in one prompt
_CLASH = {frozenset(("max_words", "min_words")), frozenset(("json", "bullets")), frozenset(("json", "end_with")),
          frozenset(("json", "lowercase")), frozenset(("include", "exclude"))}


def instruction_tasks(size: int, seed: int, constraints: int = 1) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """`size` (id, prompt, constraints) triples, reproducible from `seed`: a request on a topic, then one line per
    constraint (kinds drawn without contradictions)."""
    rng = random.Random(seed)
    out = []
    for i in range(size):
        kinds: list[str] = []
        while len(kinds) < constraints:
            kind = rng.choice(KINDS)
            if kind not in kinds and not any(frozenset((kind, k)) in _CLASH for k in kinds):
                kinds.append(kind)
        chosen = [_constraint(k, rng) for k in kinds]
        prompt = f"Write about {rng.choice(TOPICS)}. " + " ".join(describe(c) for c in chosen)
        out.append((f"instructions-{seed}-{i}", prompt, chosen))
    return out
