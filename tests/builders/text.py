"""Text and token data the builders train tokenizers and models on: deterministic for a seed."""

from __future__ import annotations

import random

WORD_VOCAB = 512  # the word-level tokenizer's ids (tokenizer("word")) that learnable_docs draws from
WORDS = (
    "the a river city market people morning light water stone bridge garden teacher student book "
    "road house village quiet small large old new green blue walks reads builds finds carries opens "
    "near under over through before after slowly often always never and but because while"
).split()

# A few sentences a byte-level BPE learns some merges from (generator tests).
PASSAGE = (
    "The river runs under the old stone bridge. Students read books in the quiet garden. "
    "A teacher walks slowly through the village market every morning. Green light falls on blue water. "
    "Question: where is the bridge? Answer: over the river. "
) * 20


def random_sentences(n: int, seed: int) -> list[str]:
    """Sentences of 5 to 12 words drawn at random from WORDS: a vocabulary without structure."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "." for _ in range(n)]


def grammar_sentences(n: int, seed: int) -> list[str]:
    """Sentences with a learnable structure: subject, verb, object, often a place phrase."""
    rng = random.Random(seed)
    nouns, verbs, adj = WORDS[2:16], WORDS[26:32], WORDS[16:26]
    out = []
    for _ in range(n):
        s = f"the {rng.choice(adj)} {rng.choice(nouns)} {rng.choice(verbs)} a {rng.choice(nouns)}"
        if rng.random() < 0.5:
            s += f" {rng.choice(WORDS[32:39])} the {rng.choice(nouns)}"
        out.append(s.capitalize() + ".")
    return out


def learnable_docs(n_docs: int, seed: int = 0, vocab: int = WORD_VOCAB) -> list[list[int]]:
    """Token-id documents, each one of 8 fixed 10-token phrases repeated: after the first repeat, fully predictable."""
    rng = random.Random(seed)
    phrases = [[rng.randrange(2, vocab) for _ in range(10)] for _ in range(8)]
    return [rng.choice(phrases) * rng.randint(3, 8) + [0] for _ in range(n_docs)]
