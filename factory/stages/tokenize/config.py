"""The tokenize stage's settings: vocabulary, special tokens, held-out split."""

from __future__ import annotations

from pydantic import Field, model_validator

from factory.chat.template import CHAT_TOKENS
from factory.stage import StageConfig, no_effect

__all__ = ["Config"]

_BYTE_ALPHABET = 256  # byte-level BPE starts from all 256 byte symbols


class Config(StageConfig):
    """Tokenizer training and token-data writing. Defaults are the smoke preset (tiny vocabulary)."""

    vocab_size: int = Field(2048, description="Vocabulary size, the 256 byte symbols and special tokens included.")
    min_frequency: int = Field(2, ge=1, description="A pair must occur at least this often to be merged.")
    bos_token: str = Field("<|endoftext|>", description="Beginning-of-sequence token (GPT-style: the same as EOS).")
    eos_token: str = Field("<|endoftext|>", description="End-of-sequence token, appended to every document.")
    pad_token: str = Field("<|pad|>", description="Padding token.")
    unk_token: str = Field("<|endoftext|>", description="Unknown token (byte-level BPE never emits it).")
    extra_special_tokens: tuple[str, ...] = Field(
        CHAT_TOKENS, description="More special tokens to reserve; the default is the chat format's markers.")
    chat_template: bool = Field(
        True, description="Save the factory's chat template (factory.chat.template) with the tokenizer; needs its "
                          "markers among the special tokens.")
    max_error_fraction: float = Field(
        0.01, ge=0.0, le=1.0,
        description="Largest share of damaged corpus lines (not JSON, unreadable part) skipped and counted; past it the step fails.")
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of documents held out (by id hash).")
    seed: int = Field(0, description="Salt of the id hashes that pick the held-out split and the tokenizer's sample.")
    max_docs_for_training: int = Field(100_000, ge=1, description="Most training documents the tokenizer learns from.")
    batch_size: int = no_effect(1024, "Documents per encoding batch.")

    @model_validator(mode="after")
    def _vocab_fits(self) -> Config:
        floor = _BYTE_ALPHABET + len(self.special_tokens())
        if self.vocab_size <= floor:
            raise ValueError(f"vocab_size must exceed {floor} (256 bytes + special tokens), got {self.vocab_size}")
        missing = [t for t in CHAT_TOKENS if t not in self.special_tokens()]
        if self.chat_template and missing:
            raise ValueError(f"chat_template needs the chat markers {missing} in extra_special_tokens "
                             "(or set chat_template: false)")
        return self

    def check_wiring(self, inputs) -> None:
        """With a `model` input the tokens are written with that model's tokenizer (continued pretraining, evaluating
        an imported model): the fields that train a tokenizer do nothing then, so a value other than the default is
        refused."""
        if "model" not in inputs:
            return
        trained = ("vocab_size", "min_frequency", "bos_token", "eos_token", "pad_token", "unk_token",
                   "extra_special_tokens", "chat_template", "max_docs_for_training")
        changed = [f for f in trained if getattr(self, f) != type(self).model_fields[f].default]
        if changed:
            raise ValueError(f"{changed[0]}: tokenize writes with the tokenizer of its `model` input (step "
                             f"{inputs['model']}), so the fields that train one ({', '.join(changed)}) do nothing; "
                             "remove them")

    def special_tokens(self) -> list[str]:
        """Special tokens in id order (first occurrence wins): eos gets id 0, then bos, unk, pad, extras."""
        tokens = [self.eos_token, self.bos_token, self.unk_token, self.pad_token, *self.extra_special_tokens]
        return list(dict.fromkeys(tokens))
