"""The byte-level BPE tokenizer: training it (Hugging Face `tokenizers`), wrapping it for transformers, and
encoding documents with it in batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from factory.logs import progress
from factory.stages.tokenize.config import Config

__all__ = ["as_transformers", "batches", "encode", "train_bpe"]


def encode(backend: Tokenizer, texts: Iterator[str], eos_id: int, batch_size: int, tally: Counter,
           n_docs: int | None, desc: str) -> Iterator[list[int]]:
    """Token ids of each text followed by EOS, encoded in batches (the Rust side runs them in parallel)."""
    n_batches = None if n_docs is None else -(-n_docs // batch_size)
    for batch in progress(batches(texts, batch_size), total=n_batches, desc=desc):
        for text, enc in zip(batch, backend.encode_batch(batch, add_special_tokens=False)):
            tally["bytes"] += len(text.encode("utf-8"))
            tally["tokens"] += len(enc.ids)
            yield [*enc.ids, eos_id]


def batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    """`texts` in lists of `size` (the last one may be shorter)."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_bpe(texts: Iterator[str], n_texts: int, config: Config) -> Tokenizer:
    """GPT-2-style byte-level BPE: no normaliser, so decode(encode(text)) == text for any text."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=config.special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=n_texts)
    return tokenizer


def as_transformers(backend: Tokenizer, config: Config):
    """The backend as a transformers tokenizer with its special tokens named."""
    named = {config.bos_token, config.eos_token, config.pad_token, config.unk_token}
    extra = [t for t in config.extra_special_tokens if t not in named]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=config.bos_token,
        eos_token=config.eos_token,
        pad_token=config.pad_token,
        unk_token=config.unk_token,
        extra_special_tokens=extra,
        clean_up_tokenization_spaces=False,  # the default cleanup rewrites " ." to "." and breaks round trips
    )
