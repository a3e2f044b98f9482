"""G-Vendi's proxy model: a trained checkpoint with its tokenizer, or a fresh seeded preset over UTF-8 bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from factory.errors import InputError
from factory.gvendi.config import ProxySettings
from factory.model import ModelSpec
from factory.model.byte_level import byte_ids, byte_model
from factory.model.checkpoints import load_model

__all__ = ["Proxy", "load_proxy"]


@dataclass
class Proxy:
    """A proxy model, its tokenizer as an `encode` function, and what it is (for the record)."""

    model: Any  # a NemotronHForCausalLM in eval mode
    encode: Callable[[str], list[int]]
    name: str

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def load_proxy(settings: ProxySettings) -> Proxy:
    """The trained proxy in `settings.model_dir` (with its tokenizer), or a fresh seeded preset over bytes
    (`factory.model.byte_level`, no end-of-document symbol: one document window at a time)."""
    if settings.model_dir is not None:
        model_dir = Path(settings.model_dir)
        tokenizer_dir = Path(settings.tokenizer_dir or settings.model_dir)
        if not (model_dir / "config.json").is_file():
            raise InputError(f"{model_dir}: no config.json; gvendi model_dir must be a save_pretrained model folder")
        if not (tokenizer_dir / "tokenizer.json").is_file():
            raise InputError(f"{tokenizer_dir}: no tokenizer.json; set gvendi tokenizer_dir to the proxy's tokenizer "
                             "folder (a tokens artifact's tokenizer/)")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        model = load_model(model_dir)
        return Proxy(model, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], f"checkpoint:{model_dir.name}")

    config = ModelSpec(preset=settings.preset).resolve()
    with torch.random.fork_rng(devices=[]):  # seeded weights, without moving the caller's random stream
        torch.manual_seed(settings.seed)
        model = byte_model(config, eod=False).eval()
    return Proxy(model, byte_ids, f"fresh:{settings.preset}:bytes:seed{settings.seed}")
