"""The chat template rendered by transformers' own `apply_chat_template`, on a tokenizer the tokenize stage's
code trains (byte-level BPE with the chat markers reserved as special tokens)."""

from __future__ import annotations

import pytest

from factory.chat.template import CHAT_TOKENS, encode_chat, render_prompt, with_chat_template
from factory.stages.tokenize.bpe import as_transformers, train_bpe
from factory.stages.tokenize.config import Config
from factory.verify.tool_calls import check_tool_calls

TEXTS = ["What is 2+3? Two plus three is five, so the answer is 5.",
         "The weather in Oslo is cold. Call the weather tool with the city name."] * 40


@pytest.fixture(scope="module")
def tok():
    config = Config(vocab_size=400, extra_special_tokens=CHAT_TOKENS)
    return with_chat_template(as_transformers(train_bpe(iter(TEXTS), len(TEXTS), config), config))


ON = [{"role": "system", "content": "detailed thinking on"},
      {"role": "user", "content": "What is 2+3?"},
      {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\n\n5"}]
OFF = [{"role": "system", "content": "detailed thinking off"},
       {"role": "user", "content": "What is 2+3?"},
       {"role": "assistant", "content": "5"}]


def test_renders_the_switch_and_think_block_exactly(tok):
    assert tok.apply_chat_template(ON, tokenize=False) == (
        "<|im_start|>system\ndetailed thinking on<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n2 plus 3 is 5.\n</think>\n\n5<|im_end|>\n")
    assert tok.apply_chat_template(OFF, tokenize=False) == (
        "<|im_start|>system\ndetailed thinking off<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\n5<|im_end|>\n")


def test_missing_system_prompt_means_off_and_enable_thinking_overrides(tok):
    user = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\ndetailed thinking off<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # `transformers serve --reasoning on|off` passes enable_thinking; it wins over the system prompt
    on = tok.apply_chat_template(OFF[:2], tokenize=False, enable_thinking=True)
    assert on.startswith("<|im_start|>system\ndetailed thinking on<|im_end|>\n")
    off = tok.apply_chat_template(ON[:2], tokenize=False, enable_thinking=False)
    assert off.startswith("<|im_start|>system\ndetailed thinking off<|im_end|>\n")
    # other system content follows the switch line
    sys = [{"role": "system", "content": "You are terse."}, *user]
    assert tok.apply_chat_template(sys, tokenize=False, enable_thinking=True).startswith(
        "<|im_start|>system\ndetailed thinking on\nYou are terse.<|im_end|>\n")


def test_markers_are_single_special_tokens(tok):
    ids = tok.apply_chat_template(ON, tokenize=True, return_dict=True)["input_ids"]
    specials = {t: tok.convert_tokens_to_ids(t) for t in CHAT_TOKENS}
    assert ids.count(specials["<|im_start|>"]) == 3 and ids.count(specials["<|im_end|>"]) == 3
    assert ids.count(specials["<think>"]) == 1 and ids.count(specials["</think>"]) == 1
    assert tok.decode(ids) == tok.apply_chat_template(ON, tokenize=False)


@pytest.mark.parametrize("messages", [ON, OFF], ids=["on", "off"])
def test_mask_covers_exactly_the_assistant_tokens(tok, messages):
    ids, mask = encode_chat(tok, messages)
    prompt = render_prompt(tok, messages[:-1])
    answer = tok(messages[-1]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    # the whole conversation is prompt + answer + "\n", and the mask is 1 on the answer only
    assert ids == prompt + answer + newline
    assert mask == [0] * len(prompt) + [1] * len(answer) + [0] * len(newline)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == messages[-1]["content"] + "<|im_end|>"


def test_multi_turn_masks_every_assistant_turn(tok):
    messages = [*OFF, {"role": "user", "content": "And 2+2?"}, {"role": "assistant", "content": "4"}]
    ids, mask = encode_chat(tok, messages)
    # two runs of ones, one per assistant turn
    runs = sum(1 for a, b in zip([0, *mask], mask) if b and not a)
    assert runs == 2
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "5<|im_end|>4<|im_end|>"


def test_tool_calls_use_the_evaluation_format(tok):
    calls = [{"name": "weather", "arguments": {"city": "Oslo"}}]
    openai_calls = [{"type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]
    for tool_calls in (calls, openai_calls):
        messages = [{"role": "system", "content": "detailed thinking on"},
                    {"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "content": "<think>\nI need the weather.\n</think>\n\n", "tool_calls": tool_calls}]
        ids, mask = encode_chat(tok, messages)
        reply = tok.decode([i for i, m in zip(ids, mask) if m]).removesuffix("<|im_end|>")
        assert reply == ('<think>\nI need the weather.\n</think>\n\n'
                         '<tool_call>[{"name": "weather", "arguments": {"city": "Oslo"}}]</tool_call>')
        assert check_tool_calls(reply, calls).reward == 1


def test_too_long_conversation_is_skipped_not_cut(tok):
    ids, _ = encode_chat(tok, ON)
    assert encode_chat(tok, ON, max_len=len(ids)) is not None
    assert encode_chat(tok, ON, max_len=len(ids) - 1) is None


def test_tokenizer_without_chat_tokens_is_refused():
    config = Config(vocab_size=300, extra_special_tokens=(), chat_template=False)
    bare = as_transformers(train_bpe(iter(TEXTS), len(TEXTS), config), config)
    with pytest.raises(ValueError, match="lacks the chat special tokens"):
        with_chat_template(bare)


def test_replies_parse_back_into_reasoning_tool_calls_and_content(tok, tmp_path):
    """The response template (what `transformers serve` parses replies with) survives save and load."""
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = render_prompt(loaded, ON[:2])

    def parse(reply: str) -> dict:
        ids = loaded(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
        return loaded.parse_response(ids, prefix=prompt)

    assert parse("<think>\n2 plus 3 is 5.\n</think>\n\n5") == {
        "role": "assistant", "reasoning_content": "2 plus 3 is 5.", "content": "5"}
    assert parse("5") == {"role": "assistant", "content": "5"}
    calls = parse('<think>\nweather\n</think>\n\n<tool_call>[{"name": "weather", "arguments": {"city": "Oslo", "days": 2}}, '
                  '{"name": "time", "arguments": {}}]</tool_call>')
    assert calls["tool_calls"] == [{"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo", "days": 2}}},
                                   {"type": "function", "function": {"name": "time", "arguments": {}}}]
