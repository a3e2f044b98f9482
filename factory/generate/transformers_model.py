"""A local causal LM as a text generator (batched, never downloads): a NemotronH model through the factory's decoder
(`factory.generate.decode`), any other architecture through transformers' `generate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.errors import InputError
from factory.generate.params import GenerationParams, Prompt, close_thinking, cut_at_stop, flatten_chat

__all__ = ["TransformersGenerator", "end_of_turn_ids", "render_chat", "render_prompt"]


class TransformersGenerator:
    """A local causal LM loaded from a `save_pretrained` folder (never downloads), generating in batches.

    A NemotronH model (the factory's own) decodes through the factory's decoder: no padding, `batch_size` sequences
    stepped at once with continuous batching, greedy replies the same as `generate` gives each prompt alone, sampled
    replies drawn per prompt from (seed, the prompt's index in the call), so batching never changes them. Other
    architectures (imported Llama, Qwen, Mistral), and calls with stop strings (a thinking budget's first pass), use
    transformers' `generate`: prompts are left-padded so that every row's new tokens start at the same column, and
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
        self.finish_reasons: list[str] = []  # per prompt of the last call: "stop" or "length"

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, prompt: Prompt, reasoning: str | None = None) -> str:
        """The exact text the model is conditioned on: chat template when there is one (its reasoning switch set to
        `reasoning` when given: `enable_thinking`), else plain text."""
        if isinstance(prompt, str):
            return prompt
        if self.has_chat_template:
            return render_chat(self.tokenizer, prompt, reasoning)
        return flatten_chat(prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """One reply per prompt. With `params.thinking_budget`, in two passes: thinking up to the budget (stopping at
        the end-of-thinking marker), then every reply still thinking is closed (`close_thinking`) and every reply not
        yet ended answers within `answer_budget`. `finish_reasons` records per prompt "stop" or "length"."""
        texts = [self.render(p, params.reasoning) for p in prompts]
        if params.thinking_budget is None:
            replies, ended = self._complete(texts, params.max_new_tokens, params)
        else:
            replies, ended = self._with_budget(texts, params)
        self.finish_reasons = ["stop" if e else "length" for e in ended]
        return [cut_at_stop(text, params.stop) for text in replies]

    def _with_budget(self, texts: list[str], params: GenerationParams) -> tuple[list[str], list[bool]]:
        close = params.think_markers[1]
        if params.thinking_budget:
            replies, ended = self._complete(texts, params.thinking_budget, params, stop_strings=(close,))
        else:  # a budget of 0: no thinking at all
            replies, ended = [""] * len(texts), [False] * len(texts)
        answering: list[int] = []
        for i, reply in enumerate(replies):
            if close in reply:  # thinking closed within the budget: keep it up to the marker, then answer
                replies[i] = reply[: reply.index(close) + len(close)]
                answering.append(i)
            elif not ended[i]:  # still thinking at the budget: close it for the model
                closed = close_thinking(reply, params)
                if closed is not None:
                    replies[i] = closed
                answering.append(i)
        answer_budget = params.answer_budget or params.max_new_tokens
        more, more_ended = self._complete([texts[i] + replies[i] for i in answering], answer_budget, params)
        for i, text, e in zip(answering, more, more_ended):
            replies[i], ended[i] = replies[i] + text, e
        return replies, ended

    def _complete(self, texts: list[str], max_new_tokens: int, params: GenerationParams,
                  stop_strings: tuple[str, ...] = ()) -> tuple[list[str], list[bool]]:
        """(continuation, whether it ended by itself) of each text, batched; a reply that keeps its thinking
        (`params.keeps_thinking`) keeps special tokens and ends at the template's end of turn."""
        import torch  # see __init__

        from factory.generate.decode import decode, supports_fast_decode  # torch at its top: see __init__
        from factory.generate.sampling import Sampling, sequence_seed

        if not texts:
            return [], []
        # A chat template usually writes the BOS itself; adding special tokens again would double it.
        add_special = not self.has_chat_template
        lengths = [len(self.tokenizer(t, add_special_tokens=add_special)["input_ids"]) for t in texts]
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context and lengths and max(lengths) + max_new_tokens > context:
            raise InputError(f"a prompt of {max(lengths)} tokens + max_new_tokens {max_new_tokens} exceeds the "
                             f"model's context of {context} tokens; lower chunk_size (chunk_unit 'tokens' bounds it "
                             "exactly) or max_new_tokens")
        ends = end_of_turn_ids(self.tokenizer) if params.keeps_thinking else [self.tokenizer.eos_token_id]
        out: list[str] = [""] * len(texts)
        ended: list[bool] = [False] * len(texts)
        new: list[list[int]] = [[] for _ in texts]  # each prompt's new token ids
        if supports_fast_decode(self.model) and not stop_strings:
            prompts = [self.tokenizer(t, add_special_tokens=add_special)["input_ids"] for t in texts]
            seeds = None if params.greedy else [sequence_seed(params.seed, i) for i in range(len(texts))]
            new = decode(self.model, prompts, max_new_tokens, Sampling(params.temperature, top_p=params.top_p),
                         stop_ids=[i for i in ends if i is not None], seeds=seeds, slots=self.batch_size)
        else:
            order = sorted(range(len(texts)), key=lambda i: lengths[i])
            sampling: dict[str, Any] = {"do_sample": False}
            if not params.greedy:
                sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if stop_strings:
                sampling |= {"stop_strings": list(stop_strings), "tokenizer": self.tokenizer}
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True,
                                       add_special_tokens=add_special).to(self.device)
                # generate() samples from torch's global generator; seeding per batch makes a run repeatable.
                torch.manual_seed(params.seed + start)
                with torch.no_grad():
                    ids = self.model.generate(  # (rows, prompt_len + new_len)
                        **batch, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                        eos_token_id=ends if params.keeps_thinking else ends[0], **sampling,
                    )
                # (rows, new_len): left padding aligns the prompts' ends
                for i, row in zip(rows, ids[:, batch["input_ids"].shape[1] :].tolist()):
                    new[i] = row
        for i, row in enumerate(new):
            end = next((k for k, t in enumerate(row) if t in ends), None)
            ended[i] = end is not None
            if params.keeps_thinking:  # the think markers are special tokens: kept, the end of turn not
                out[i] = self.tokenizer.decode(row[:end], skip_special_tokens=False)
            else:
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True)
        return out, ended


def render_prompt(tokenizer, messages: Sequence[dict[str, Any]], **template_kwargs) -> list[int]:
    """Token ids of `messages` followed by the assistant header, ready for generation."""
    out = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                        return_dict=True, **template_kwargs)
    return list(out["input_ids"])


def render_chat(tokenizer, messages: list, reasoning: str | None = None) -> str:
    """A conversation through the tokenizer's chat template, ready for the assistant's reply; its reasoning switch set
    to `reasoning` when given (`enable_thinking`)."""
    switch = {} if reasoning is None else {"enable_thinking": reasoning == "on"}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **switch)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The tokens that end an assistant reply under the tokenizer's chat template (its end-of-turn marker:
    `<|im_end|>` in the factory's and Qwen's, `<|eot_id|>` in Llama 3's), then EOS: what generation stops at."""
    ids: list[int] = []
    if tokenizer.chat_template:
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        specials = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
        before = list(tokenizer.apply_chat_template(probe[:1], add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"])
        whole = list(tokenizer.apply_chat_template(probe, tokenize=True, return_dict=True)["input_ids"])
        reply = [i for i in whole[len(before):] if tokenizer.decode([i]).strip()]  # a trailing newline is not the end
        if reply and reply[-1] in specials:
            ids.append(reply[-1])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
