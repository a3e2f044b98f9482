"""One tokenizer builder, by kind: word-level ids, a byte-level BPE trained here, or the tokenize stage's own BPE
with the chat markers and template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from factory.chat.template import with_chat_template
from factory.stages.tokenize.bpe import as_transformers, train_bpe
from factory.stages.tokenize.config import Config as TokenizeConfig

# Special tokens by role; they take ids in this order (the first occurrence of a token wins).
S_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}  # <pad>=0 <s>=1 </s>=2
ENDOFTEXT = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
             "pad_token": "<|pad|>"}  # <|endoftext|>=0 <|pad|>=1


def tokenizer(kind: str, texts: Sequence[str] = (), vocab_size: int = 512, specials: Mapping[str, str] = S_TOKENS,
              chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A transformers tokenizer of `kind`:

    - "word": `vocab_size` ids, <|endoftext|>=0 <|pad|>=1 and the words w2 ... w{vocab_size - 1} (split on spaces);
    - "bpe": a byte-level BPE of up to `vocab_size` tokens trained on `texts`, with `specials` (S_TOKENS, ENDOFTEXT)
      and `chat_template` when given;
    - "chat": the tokenize stage's byte-level BPE (its default special tokens: the chat markers reserved) trained on
      `texts`, with the factory's chat template.
    """
    if kind == "chat":
        config = TokenizeConfig(vocab_size=vocab_size)
        return with_chat_template(as_transformers(train_bpe(iter(texts), len(texts), config), config))
    if kind == "word":
        vocab = {"<|endoftext|>": 0, "<|pad|>": 1, **{f"w{i}": i for i in range(2, vocab_size)}}
        backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(tokenizer_object=backend, **ENDOFTEXT)
    if kind != "bpe":
        raise ValueError(f"tokenizer kind {kind!r}: word, bpe or chat")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(dict.fromkeys(specials.values())),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    if chat_template:
        tok.chat_template = chat_template
    return tok
