"""A local causal LM as a text generator (transformers `generate`, batched, never downloads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.errors import InputError
from factory.generate.params import GenerationParams, Prompt, cut_at_stop, flatten_chat

__all__ = ["TransformersGenerator"]


class TransformersGenerator:
    """A local causal LM loaded from a `save_pretrained` folder (never downloads), generating in batches.

    Prompts are left-padded so that every row's new tokens start at the same column; prompts are
    sorted by length before batching so that rows in a batch need little padding.
    """

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 8, dtype: str | None = None,
                 model_id: str | None = None):
        # loading a spec imports this module (GeneratorSettings.open names it): torch and transformers only when used
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise InputError(f"{model_dir}: not a model folder (no config.json); point model_dir at a save_pretrained folder")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        # What output metadata names as the generator: given (an artifact's URI), else the folder's name,
        # never the local path, which means nothing on another machine.
        self.model_id = model_id or model_dir.resolve().name

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, prompt: Prompt) -> str:
        """The exact text the model is conditioned on: chat template when there is one, else plain text."""
        if isinstance(prompt, str):
            return prompt
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return flatten_chat(prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        import torch  # see __init__

        texts = [self.render(p) for p in prompts]
        # A chat template usually writes the BOS itself; adding special tokens again would double it.
        add_special = not self.has_chat_template
        lengths = [len(self.tokenizer(t, add_special_tokens=add_special)["input_ids"]) for t in texts]
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context and lengths and max(lengths) + params.max_new_tokens > context:
            raise InputError(f"a prompt of {max(lengths)} tokens + max_new_tokens {params.max_new_tokens} exceeds the "
                             f"model's context of {context} tokens; lower chunk_size (chunk_unit 'tokens' bounds it "
                             "exactly) or max_new_tokens")
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out: list[str] = [""] * len(texts)
        sampling: dict[str, Any] = {"do_sample": False}
        if not params.greedy:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True,
                                   add_special_tokens=add_special).to(self.device)
            # generate() samples from torch's global generator; seeding per batch makes a run repeatable.
            torch.manual_seed(params.seed + start)
            with torch.no_grad():
                ids = self.model.generate(  # (rows, prompt_len + new_len)
                    **batch, max_new_tokens=params.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id, **sampling,
                )
            new = ids[:, batch["input_ids"].shape[1] :]  # (rows, new_len): left padding aligns the prompts' ends
            for i, text in zip(rows, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = cut_at_stop(text, params.stop)
        return out
