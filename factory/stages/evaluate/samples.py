"""Loading the checkpoint (and its own tokenizer when no tokens input is wired), scoring the cloze sets, and greedy
samples."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.chat.template import stop_token_ids
from factory.errors import InputError
from factory.generate.decode import decode, supports_fast_decode
from factory.logs import progress
from factory.stage import StepContext
from factory.stages.evaluate.config import Config
from factory.stages.evaluate.tasks import score_set
from factory.tasks.sets import builtin_path, read_set


def load_model(folder: Path) -> torch.nn.Module:
    """Load a `save_pretrained` causal LM folder in eval mode."""
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json; the model artifact must hold a save_pretrained folder in model/")
    return AutoModelForCausalLM.from_pretrained(folder).eval()


def folder_tokenizer(folder: Path):
    """The tokenizer saved beside a model in its folder (a release, an imported model, a trainer's export)."""
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise InputError(f"{folder}: no tokenizer beside the model; wire a tokens input (whose tokenizer it was "
                         "trained with) or evaluate a folder that holds one")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def score_sets(model: torch.nn.Module, tokenizer, config: Config, device: torch.device, ctx: StepContext) -> dict[str, dict[str, float]]:
    """Scores of every set `config` names (built-in `tasks`, then `task_files`), by set name:
    {"items", "accuracy", "target_logprob", "target_tokens"}. Items are cut to `seq_len` tokens on the left."""
    sets = [(name, builtin_path(name)) for name in config.tasks]
    sets += [(Path(file).stem, Path(file)) for file in config.task_files]
    scores: dict[str, dict[str, float]] = {}
    for name, path in progress(sets, total=len(sets), desc="evaluation sets"):
        if not path.is_file():
            raise InputError(f"{path}: evaluation set file not found (stages.evaluate.task_files)")
        score = score_set(model, tokenizer, read_set(path), config.seq_len, config.batch_size, device)
        scores[name] = {"items": score.items, "accuracy": score.accuracy, "target_logprob": score.target_logprob,
                        "target_tokens": score.target_tokens}
        ctx.log_dataset(
            name=name,
            uri=f"builtin:{name}" if name in config.tasks else str(path),
            digest="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
            context="evaluation",
            profile={"items": score.items},
        )
        ctx.log.info("evaluation_set", set=name, items=score.items, accuracy=round(score.accuracy, 4),
                     target_logprob=round(score.target_logprob, 4))
    return scores


def generate_samples(model: torch.nn.Module, tokenizer, config: Config, device: torch.device) -> list[dict[str, Any]]:
    """Greedy completions, one prompt at a time (no padding, so no attention-mask subtleties). A completion stops where
    the release's generation config stops it: EOS, and the chat template's end-of-turn marker (`<|im_end|>`)."""
    samples = []
    stops = [i for i in stop_token_ids(tokenizer) if i != tokenizer.unk_token_id]
    for prompt in config.prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)  # (1, P)
        if supports_fast_decode(model):  # NemotronH: the factory's decoder, the same greedy tokens as generate's
            new = decode(model, [ids[0].tolist()], config.max_new_tokens, stop_ids=stops, slots=1)[0]
        else:  # other architectures (imported Llama, Qwen, Mistral): transformers' generate
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                eos_token_id=stops or None,
            )  # (1, P + new)
            new = out[0, ids.shape[1] :].tolist()
        samples.append(
            {
                "prompt": prompt,
                "completion": tokenizer.decode(new, skip_special_tokens=True),
                "prompt_tokens": ids.shape[1],
                "new_token_ids": new,
            }
        )
    return samples


