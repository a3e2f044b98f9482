"""The factory's chat format: ChatML turns with Llama-Nemotron's reasoning switch, as a Jinja chat template.

    <|im_start|>system
    detailed thinking on<|im_end|>
    <|im_start|>user
    What is 2+3?<|im_end|>
    <|im_start|>assistant
    <think>
    2 plus 3 is 5.
    </think>

    5<|im_end|>

The reasoning switch is the system prompt `detailed thinking on` or `detailed thinking off`. With `on` the
model is trained to open its answer with a `<think>...</think>` block; with `off` the answer holds none.
The template writes the switch line itself, so every rendered conversation carries exactly one:

- a system message whose content is exactly `detailed thinking on|off` sets it;
- `enable_thinking=True|False` (the keyword `transformers serve --reasoning on|off` passes to
  `apply_chat_template`) overrides it;
- with neither, the switch is `off` (Llama-Nemotron's default: reasoning is opt-in). A missing system
  prompt therefore renders as `detailed thinking off`, so the model never sees a conversation without one;
- any other system content is kept, on the lines after the switch line.

Assistant content and its closing `<|im_end|>` sit inside `{% generation %}` markers, so
`apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)` returns the mask of the
tokens an SFT loss trains on (the `<|im_start|>assistant` header is not trained: the prompt writes it).
Tool calls (an assistant message's `tool_calls`, either `{"name", "arguments"}` or OpenAI's
`{"type": "function", "function": {...}}`) are written after the content in the evaluation format of
`factory.verify.tool_calls`: `<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>`. Tool results are
`tool` turns; tool definitions passed as `tools=` are listed in the system turn.

The markers are special tokens the tokenize stage reserves (`CHAT_TOKENS`), so web text can never forge
them and each is one id. Because they are special, a plain `decode(..., skip_special_tokens=True)` drops
them; `RESPONSE_TEMPLATE` (transformers' declarative response parsing, saved with the tokenizer) splits a
reply into `reasoning_content`, `tool_calls` and `content` instead, which is what `transformers serve` and
`tokenizer.parse_response` use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.generate.transformers_model import end_of_turn_ids, render_prompt

__all__ = ["CHAT_TEMPLATE", "CHAT_TOKENS", "IM_END", "RESPONSE_TEMPLATE", "THINK_OPEN", "encode_chat",
           "folder_chat_template", "has_generation_markers", "reasoning_switch", "render_prompt", "stop_token_ids",
           "with_chat_template"]

# what generation stops at under a chat template (its end-of-turn marker, then EOS), and a prompt rendered for
# generation: declared beside the generator, which stops there too and whose rollout samplers render prompts
stop_token_ids = end_of_turn_ids

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
CHAT_TOKENS: tuple[str, ...] = (IM_START, IM_END, THINK_OPEN, THINK_CLOSE, TOOL_CALL_OPEN, TOOL_CALL_CLOSE)

# Whitespace control: every tag trims with `-` and newlines are written as explicit "\n" strings, so the
# rendered text is exactly what the module docstring shows and nothing depends on Jinja's trim settings.
CHAT_TEMPLATE = (
    "{%- set switches = ['detailed thinking on', 'detailed thinking off'] -%}"
    "{%- set ns = namespace(mode='off', extra='', start=0) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set ns.start = 1 -%}"
    "{%- set sys = (messages[0]['content'] or '') | trim -%}"
    "{%- if sys in switches -%}{%- set ns.mode = sys[18:] -%}{%- else -%}{%- set ns.extra = sys -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- if enable_thinking is defined and enable_thinking is not none -%}"
    "{%- set ns.mode = 'on' if enable_thinking else 'off' -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\ndetailed thinking ' + ns.mode -}}"
    "{%- if ns.extra -%}{{- '\\n' + ns.extra -}}{%- endif -%}"
    "{%- if tools -%}"
    "{{- '\\n\\nTools you may call, answering with <tool_call>[{\"name\": ..., \"arguments\": {...}}]</tool_call>:' -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- for message in messages[ns.start:] -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- message['content'] or '' -}}"
    "{%- if message['tool_calls'] -%}"
    "{%- if message['content'] and not message['content'].endswith('\\n') -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>[' -}}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{%- if not loop.first -%}{{- ', ' -}}{%- endif -%}"
    "{{- '{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' -}}"
    "{%- if fn['arguments'] is string -%}{{- fn['arguments'] -}}{%- else -%}{{- fn['arguments'] | tojson -}}{%- endif -%}"
    "{{- '}' -}}"
    "{%- endfor -%}"
    "{{- ']</tool_call>' -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- elif message['role'] in ['user', 'tool'] -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- raise_exception('chat template: role ' + message['role'] + ' is not system (first only), user, assistant or tool') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


# How a generated reply reads back as a message: the think block is `reasoning_content`, the tool-call list
# becomes OpenAI-style `tool_calls` (one entry per call, arguments kept as JSON values), the rest up to the
# end-of-turn marker is `content`.
RESPONSE_TEMPLATE: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "reasoning_content": {"open": THINK_OPEN, "close": THINK_CLOSE, "content": "text"},
        "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": TOOL_CALL_CLOSE, "content": "json",
                       "transform": {"type": "function", "function": {"name": "{name}", "arguments": "{arguments}"}},
                       "transform_each": True},
        "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"},
    },
}


def with_chat_template(tokenizer):
    """`tokenizer` with the factory's chat template and response template set (in place, and returned).

    The chat markers must already be single special tokens of its vocabulary (the tokenize stage reserves
    them); a tokenizer built without them fails here, naming the missing ones, rather than training on
    markers split into byte pieces.
    """
    vocab = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values()}
    missing = [t for t in CHAT_TOKENS if t not in vocab or t not in specials]
    if missing:
        raise ValueError(f"tokenizer lacks the chat special tokens {missing}: retrain it with the tokenize "
                         f"stage's default extra_special_tokens (which include {list(CHAT_TOKENS)})")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.response_template = RESPONSE_TEMPLATE
    return tokenizer


def chat_tokenizer(model_dir: Path):
    """The tokenizer of the model folder `model_dir`, with its own chat template, or the factory's where it has none
    (an imported model keeps its own: import_model's `chat_template: keep`). A tokenizer without the chat markers
    is an `InputError` naming the folder."""
    from transformers import AutoTokenizer  # a spec load imports this module; the tokenizer only when a stage runs

    from factory.errors import InputError

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not tokenizer.chat_template:
        try:
            with_chat_template(tokenizer)
        except ValueError as e:
            raise InputError(f"{model_dir}: {e}") from None
    return tokenizer


_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(tokenizer) -> bool:
    """Whether the tokenizer's chat template marks assistant content with `{% generation %}` (the factory's does; most
    published templates do not)."""
    return bool(_GENERATION.search(tokenizer.chat_template or ""))


def encode_chat(tokenizer, messages: Sequence[dict[str, Any]], max_len: int | None = None,
                **template_kwargs) -> tuple[list[int], list[int]] | None:
    """(input_ids, assistant_mask) of a whole conversation, or None when it is longer than `max_len` tokens.

    The mask is 1 on every token an SFT loss trains on (assistant content and its end-of-turn marker), 0 elsewhere.
    With a template that marks assistant content (`{% generation %}`, the factory's) the template gives the mask;
    with one that does not (an imported model's own, kept), each assistant turn's tokens are what rendering the
    conversation up to that turn adds to rendering it up to the turn's generation prompt, which must be a prefix of
    the whole (a template that renders earlier turns differently is refused with one error naming why).
    A conversation that does not fit is not cut: cutting would train on an answer without its end, so the
    caller skips and counts it.
    """
    messages = list(messages)
    if has_generation_markers(tokenizer):
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, **template_kwargs)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    else:
        ids = _render(tokenizer, messages, **template_kwargs)
        mask = [0] * len(ids)
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start = render_prompt(tokenizer, messages[:i], **template_kwargs)
            end = _render(tokenizer, messages[: i + 1], **template_kwargs)
            if end[: len(start)] != start or ids[: len(end)] != end:
                raise ValueError("the chat template renders a conversation's earlier turns differently once later turns "
                                 "follow, so its assistant tokens cannot be told apart; use chat_template: factory")
            mask[len(start): len(end)] = [1] * (len(end) - len(start))
    if max_len is not None and len(ids) > max_len:
        return None
    return ids, mask


def _render(tokenizer, messages: Sequence[dict[str, Any]], **template_kwargs) -> list[int]:
    return list(tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True,
                                              **template_kwargs)["input_ids"])


SWITCH_PROMPT = "detailed thinking"  # Llama-Nemotron's switch: the system prompt `detailed thinking on|off`


def reasoning_switch(template: str | None) -> set[str]:
    """How a chat template turns reasoning on and off: {"enable_thinking"} (Qwen 3's keyword), {"system_prompt"}
    (Llama-Nemotron's `detailed thinking on|off`), both (the factory's), or set() for a template without a switch."""
    template = template or ""
    return ({"enable_thinking"} if "enable_thinking" in template else set()) | \
        ({"system_prompt"} if SWITCH_PROMPT in template else set())


def folder_chat_template(folder: str | Path) -> str | None:
    """The chat template a model folder's tokenizer carries (`chat_template.jinja`, or `chat_template` in
    tokenizer_config.json), read without loading the tokenizer; None without one."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return template or None
    return None
