"""A release whose tokens artifact comes from the tokenize stage's tokenizer carries the chat template: stock
`AutoTokenizer.from_pretrained(release)` renders the reasoning switch, and generation stops at end of turn."""

import json
import shutil

from transformers import AutoTokenizer

from factory.chat.template import CHAT_TEMPLATE, CHAT_TOKENS
from factory.stages.release import Config, run
from factory.stage import Artifact, StepContext
from tests.builders import tokenizer


def test_release_carries_the_chat_template(upstream, tmp_path):
    # the upstream tokens artifact, with its tokenizer replaced by one the tokenize stage's code builds
    tokens_dir = tmp_path / "tokens"
    shutil.copytree(upstream["tokens"].path, tokens_dir)
    shutil.rmtree(tokens_dir / "tokenizer")
    tokenizer("chat", ["The river city has a bridge and a market by the water."] * 50).save_pretrained(tokens_dir / "tokenizer")
    tokens = Artifact(tokens_dir, dict(upstream["tokens"].manifest))

    out = tmp_path / "release"
    out.mkdir()
    run(Config(model_name="tiny-chat"), {"model": upstream["model"], "tokens": tokens,
                                         "evaluation": upstream["evaluation"]}, out, StepContext("release"))

    assert (out / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    messages = [{"role": "user", "content": "Where is the market?"}]
    for thinking, line in ((True, "detailed thinking on"), (False, "detailed thinking off")):
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        assert text == (f"<|im_start|>system\n{line}<|im_end|>\n<|im_start|>user\nWhere is the market?<|im_end|>\n"
                        "<|im_start|>assistant\n")
    gen = json.loads((out / "generation_config.json").read_text())
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end == 1 + CHAT_TOKENS.index("<|im_end|>") + 1  # <|endoftext|>=0, <|pad|>=1, <|im_start|>=2
    assert gen["eos_token_id"] == [tok.eos_token_id, im_end]
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == tok.eos_token_id
    card = (out / "README.md").read_text()
    assert "## Chat format and reasoning switch" in card and "`detailed thinking on`" in card
    assert "transformers serve" in card and "chat_template_kwargs" in card  # the switch per request (test_card_snippets)
    assert "This model was not post-trained" in card  # a pretrained model has the template, not the behaviour
