"""The tokens builder: a tokenizer and Megatron indexed splits (`SPLIT.bin` + `SPLIT.idx`), with the counts and
UTF-8 bytes of each split in stats.json, as the tokenize stage writes them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from factory.stage import Artifact
from factory.tokens import write_indexed
from tests.builders.manifests import publish
from tests.builders.text import grammar_sentences
from tests.builders.tokenizers import tokenizer


def tokens(folder: Path, tokenizer, splits: Mapping[str, Sequence[str] | Sequence[Sequence[int]]],
           corpus: Artifact | None = None) -> Artifact:
    """`tokenizer/` and one indexed dataset per split: texts are encoded with an EOS after each document, token-id
    documents are written as they are."""
    folder = Path(folder)
    tokenizer.save_pretrained(folder / "tokenizer")
    stats = {}
    for split, docs in splits.items():
        texts = bool(docs) and isinstance(docs[0], str)
        ids = [tokenizer(d).input_ids + [tokenizer.eos_token_id] for d in docs] if texts else docs
        stats[split] = write_indexed(folder / split, ids, len(tokenizer))
        if texts:
            stats[split]["bytes"] = sum(len(d.encode()) for d in docs)
    (folder / "stats.json").write_text(json.dumps(stats))
    return publish(folder, "tokenize", "tokens", inputs={"corpus": corpus} if corpus else {},
                   config={"vocab_size": len(tokenizer)},
                   metrics={f"{split}_tokens": float(c["tokens"]) for split, c in stats.items()})


def grammar_tokens(folder: Path, vocab_size: int = 384, train_docs: int = 600, valid_docs: int = 60) -> Artifact:
    """Documents of three `grammar_sentences` each (train and valid splits), under a byte-level BPE trained on 400 of
    them (<pad>=0 <s>=1 </s>=2): data a tiny model learns in tens of steps."""
    tok = tokenizer("bpe", grammar_sentences(400, seed=0), vocab_size)
    splits = {split: [" ".join(grammar_sentences(3, seed=seed * 100_000 + i)) for i in range(n)]
              for split, n, seed in (("train", train_docs, 1), ("valid", valid_docs, 2))}
    return tokens(folder, tok, splits)
