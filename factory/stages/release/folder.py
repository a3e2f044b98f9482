"""The Hugging Face model folder: weights, tokenizer, config.json and generation_config.json, taken from the
upstream model and tokens artifacts, with special-token ids that agree with the shipped tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import GenerationConfig

from factory.chat.template import stop_token_ids
from factory.errors import InputError
from factory.stages.release.config import Config
from factory.tokens import (
    load_tokenizer,  # imports torch, which loading a spec must not
)

__all__ = ["copy_tokenizer", "copy_weights", "write_generation_config", "write_model_config"]

# Files of a save_pretrained model folder that belong in the release (generation_config.json is rewritten).
_MODEL_FILES = ("*.safetensors", "model.safetensors.index.json")


def copy_weights(model_dir: Path, output: Path) -> int:
    """Copy the safetensors weights (and shard index); return their total size in bytes."""
    files = sorted({p for pattern in _MODEL_FILES for p in model_dir.glob(pattern)})
    if not any(p.suffix == ".safetensors" for p in files):
        raise InputError(f"{model_dir}: no *.safetensors weights; the model artifact must be a save_pretrained folder")
    for p in files:
        shutil.copy2(p, output / p.name)
    return sum(p.stat().st_size for p in files if p.suffix == ".safetensors")


def copy_tokenizer(tokens_dir: Path, output: Path) -> Any:
    """Copy the tokens artifact's tokenizer files to the folder's root (where AutoTokenizer looks); return the
    loaded tokenizer."""
    tokenizer = load_tokenizer(tokens_dir)
    tokenizer_dir = Path(tokens_dir) / "tokenizer"
    if tokenizer.eos_token_id is None:
        raise InputError(f"{tokenizer_dir}: the tokenizer has no eos token; generation could never stop")
    for p in tokenizer_dir.iterdir():
        if p.is_file():
            shutil.copy2(p, output / p.name)
    return tokenizer


def write_model_config(model_dir: Path, output: Path, tokenizer: Any) -> dict[str, Any]:
    """config.json with the special-token ids taken from the tokenizer that ships beside it."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: missing; the model artifact must be a save_pretrained folder")
    cfg = json.loads(path.read_text())
    if len(tokenizer) > cfg.get("vocab_size", len(tokenizer)):
        raise InputError(
            f"{path}: vocab_size {cfg['vocab_size']} is smaller than the tokenizer's {len(tokenizer)} tokens; "
            "the model and tokens inputs do not belong together"
        )
    cfg.update(_special_ids(tokenizer))
    (output / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return cfg


def write_generation_config(output: Path, tokenizer: Any, config: Config) -> None:
    """generation_config.json: the tokenizer's special ids and the configured sampling defaults."""
    ids = _special_ids(tokenizer)
    GenerationConfig(
        **{**ids, "eos_token_id": _stop_ids(tokenizer, ids["eos_token_id"])},
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
    ).save_pretrained(output)


def _stop_ids(tokenizer: Any, eos: int) -> int | list[int]:
    """The ids generation stops at: EOS, and with a chat template also the end-of-turn marker the template
    closes every assistant turn with (`<|im_end|>` in the factory's), so a chat reply ends where its turn does."""
    ends = [i for i in stop_token_ids(tokenizer) if i not in (eos, tokenizer.unk_token_id)]
    return [eos, *ends] if ends else eos


def _special_ids(tokenizer: Any) -> dict[str, int | None]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad}
