"""The Hugging Face model folder: weights in BF16, tokenizer, config.json and generation_config.json, taken from the
upstream model and tokens artifacts, with special-token ids that agree with the shipped tokenizer and the config
fields serving engines read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import GenerationConfig

from factory.chat.template import stop_token_ids
from factory.errors import InputError
from factory.stages.release.config import Config
from factory.tokens import (
    load_tokenizer,  # imports torch, which loading a spec must not
)

__all__ = ["copy_tokenizer", "write_bf16_weights", "write_generation_config", "write_model_config"]

INDEX = "model.safetensors.index.json"
# NemotronH's layer kinds as the pattern characters of its original config (`hybrid_override_pattern`)
PATTERN = {"linear_attention": "M", "mamba": "M", "full_attention": "*", "attention": "*", "mlp": "-", "moe": "E"}


def write_bf16_weights(model_dir: Path, output: Path) -> int:
    """The checkpoint's safetensors (and shard index) in `output`, every floating tensor cast to BF16 (the trainer
    saves FP32); return their total size in bytes."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise InputError(f"{model_dir}: no *.safetensors weights; the model artifact must be a save_pretrained folder")
    total = 0
    for path in files:
        tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, output / path.name, metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    if (model_dir / INDEX).is_file():
        index = json.loads((model_dir / INDEX).read_text())
        index.setdefault("metadata", {})["total_size"] = total
        (output / INDEX).write_text(json.dumps(index, indent=2))
    return sum((output / p.name).stat().st_size for p in files)


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
    cfg.update(engine_fields(cfg))
    (output / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return cfg


def engine_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """Config fields serving engines read that transformers 5 derives instead of saving: a NemotronH config in
    transformers-5 form keeps its layers as `layers_block_type`, while vLLM's NemotronH reads the original
    `hybrid_override_pattern` (and `num_hidden_layers`, which must agree with it). transformers reads both back and
    keeps `layers_block_type`. The dtype is the weights' (BF16)."""
    out: dict[str, Any] = {"dtype": "bfloat16", **({"torch_dtype": "bfloat16"} if "torch_dtype" in cfg else {})}
    layers = cfg.get("layers_block_type")
    if cfg.get("model_type") == "nemotron_h" and isinstance(layers, list):
        out.update(hybrid_override_pattern="".join(PATTERN[t] for t in layers), num_hidden_layers=len(layers))
        mtp = cfg.get("mtp_layers_block_type")
        if cfg.get("num_nextn_predict_layers") and isinstance(mtp, list):
            out["mtp_hybrid_override_pattern"] = "".join(PATTERN[t] for t in mtp)
    return out


def write_generation_config(output: Path, tokenizer: Any, config: Config) -> None:
    """generation_config.json: the tokenizer's special ids and the configured defaults (greedy unless do_sample)."""
    ids = _special_ids(tokenizer)
    sampling = ({"do_sample": True, "temperature": config.temperature or 0.7, "top_p": config.top_p or 0.95}
                if config.do_sample else {"do_sample": False})
    GenerationConfig(
        **{**ids, "eos_token_id": _stop_ids(tokenizer, ids["eos_token_id"])},
        **sampling,
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
