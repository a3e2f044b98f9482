"""Language models over UTF-8 bytes: small proxy models that read text before any tokenizer exists.

The vocabulary is the 256 byte values, plus, for a model trained on documents packed into one stream, an
end-of-document symbol (`EOD`, 256) after every document, which is then also its bos, eos and pad token
(vocabulary 257). The mix stage's proxy runs train on such streams; G-Vendi's fresh proxy reads one window of
one document at a time, so it has no EOD (vocabulary 256), which also keeps its scores as they were measured.

    ids = byte_ids("héllo")                               # [104, 195, 169, 108, 108, 111]
    stream = byte_stream(["a", "bc"])                     # uint16 [97, 256, 98, 99, 256]
    model = byte_model(ModelSpec(preset="tiny").resolve(), eod=True)   # NemotronHForCausalLM, vocab 257
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from factory.model.build import build_model
from factory.model.config import ModelConfig

__all__ = ["BYTES", "EOD", "byte_ids", "byte_model", "byte_stream", "byte_vocab"]

BYTES = 256  # the byte values, each its own token
EOD = 256  # end-of-document symbol, after the byte values


def byte_vocab(eod: bool) -> int:
    """Vocabulary size: the byte values, and the EOD symbol when `eod`."""
    return BYTES + int(eod)


def byte_ids(text: str) -> list[int]:
    """The tokenizer of a byte model: the text's UTF-8 bytes."""
    return list(text.encode("utf-8"))


def byte_stream(texts: Iterable[str]) -> np.ndarray:
    """Documents packed into one stream: every text's UTF-8 bytes followed by EOD, (n_bytes + n_texts,) uint16."""
    pieces = []
    for text in texts:
        pieces.append(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16))
        pieces.append(np.array([EOD], dtype=np.uint16))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint16)


def byte_model(config: ModelConfig, eod: bool):
    """A freshly initialised `NemotronHForCausalLM` of `config` over bytes: vocabulary 257 with EOD as its bos, eos
    and pad token when `eod`, else 256 without special tokens. Seed torch first for seeded weights."""
    if eod:
        return build_model(config, byte_vocab(True), bos_token_id=EOD, eos_token_id=EOD, pad_token_id=EOD)
    return build_model(config, byte_vocab(False))
