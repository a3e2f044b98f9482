"""Multiple-choice letters and short answers, with the two CrossThink question templates.

    prompt = multiple_choice_prompt("Which is a prime?", ["4", "6", "7", "9"])
    check_choice("... so the answer is \\boxed{C}", gold="C", options=["4", "6", "7", "9"])      # True
    prompt = open_ended_prompt("Which gas do plants take in?")
    check_short_answer("\\boxed{Carbon dioxide.}", gold="carbon dioxide")                         # True

Nemotron-CrossThink poses each general-reasoning question either as multiple choice (lettered options, the
model answers with a letter) or open-ended (options removed, the model answers in a few words), both with
the final answer in `\\boxed{}`. A letter is read from, in order: the last `\\boxed{}`; an "answer is (X)" or
"Answer: X" phrase; a reply that is only the letter or only an option's text. Short answers compare after
normalisation (case, punctuation, articles, spaces), as SQuAD's exact match does.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

LETTERS = string.ascii_uppercase

MULTIPLE_CHOICE_TEMPLATE = (
    "Answer the following multiple choice question. Think step by step, then give the letter of the correct "
    "option as your final answer in \\boxed{{}}.\n\n{question}\n\n{options}")
OPEN_ENDED_TEMPLATE = (
    "Answer the following question. Think step by step, then give a short final answer (a few words or a "
    "number) in \\boxed{{}}.\n\n{question}")


def multiple_choice_prompt(question: str, options: Sequence[str]) -> str:
    """The CrossThink-style multiple-choice prompt: the question and its options as `(A) ...` lines."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, got {len(options)}")
    lines = "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))
    return MULTIPLE_CHOICE_TEMPLATE.format(question=question.strip(), options=lines)


def open_ended_prompt(question: str) -> str:
    """The CrossThink-style open-ended prompt: the question alone, a short boxed answer asked for."""
    return OPEN_ENDED_TEMPLATE.format(question=question.strip())


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) with balanced braces, or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None  # unbalanced: malformed, no answer


def normalize_answer(text: str) -> str:
    """Lower case, `\\text{}` unwrapped, punctuation, articles and extra spaces removed (SQuAD-style)."""
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?\s*([A-Z])\s*\)?(?![A-Za-z])", re.IGNORECASE)


def extract_choice(reply: str, options: Sequence[str] = ()) -> str | None:
    """The option letter a reply chose (upper case), or None when it chose none readably."""
    n = len(options) or len(LETTERS)
    valid = LETTERS[:n]
    boxed = last_boxed(reply)
    candidates = []
    if boxed is not None:
        candidates.append(re.sub(r"\\text\{([^{}]*)\}", r"\1", boxed).strip().strip("()").strip())
    matches = _ANSWER_PHRASE.findall(reply)
    if matches:
        candidates.append(matches[-1])
    candidates.append(reply.strip().strip(".").strip("()"))
    for candidate in candidates:
        if len(candidate) == 1 and candidate.upper() in valid:
            return candidate.upper()
        if options:
            # an answer that is an option's text counts as that option
            normalized = normalize_answer(candidate)
            for i, option in enumerate(options):
                if normalized and normalized == normalize_answer(option):
                    return LETTERS[i]
    return None


def check_choice(reply: str, gold: str, options: Sequence[str] = ()) -> bool:
    """The reply chose the gold letter."""
    return extract_choice(reply, options) == gold.strip().upper()


def check_short_answer(reply: str, gold: str | Sequence[str]) -> bool:
    """The reply's boxed answer (or the whole reply) equals a gold answer after normalisation."""
    answer = last_boxed(reply)
    answer = reply if answer is None else answer
    golds = [gold] if isinstance(gold, str) else list(gold)
    normalized = normalize_answer(answer)
    return bool(normalized) and any(normalized == normalize_answer(g) for g in golds)
