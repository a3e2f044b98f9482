"""TransformersGenerator on tiny random models saved to disk: deterministic greedy output, batching
that does not change it, chat templates, stop strings, seeded sampling."""

from __future__ import annotations

import pytest

from factory.errors import InputError
from factory.generate import GenerationParams, TransformersGenerator, flatten_chat
from tests.builders import generator

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0)
PROMPTS = [
    "The river",
    "Students read books in the quiet garden while a teacher",
    "Green light",
    "A teacher walks slowly through the village market every morning and",
    "Question: where is the bridge? Answer:",
]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return generator(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def gpt2_chat_dir(tmp_path_factory):
    return generator(tmp_path_factory.mktemp("gpt2-chat"), chat_template=CHAT_TEMPLATE)


def test_greedy_is_deterministic_and_batching_does_not_change_it(gpt2_dir):
    gen = TransformersGenerator(gpt2_dir, batch_size=4)
    batched = gen.generate(PROMPTS, GREEDY)
    assert TransformersGenerator(gpt2_dir, batch_size=4).generate(PROMPTS, GREEDY) == batched  # a fresh load too
    gen.batch_size = 1
    assert gen.generate(PROMPTS, GREEDY) == batched  # one prompt at a time: no padding at all
    assert all(batched) and len(set(batched)) > 1  # real, prompt-dependent text came back
    for prompt, out in zip(PROMPTS, batched):  # only the new text, within the token budget
        assert not out.startswith(prompt) and gen.count_tokens(out) <= GREEDY.max_new_tokens


def test_chat_template_used_when_the_tokenizer_has_one(gpt2_dir, gpt2_chat_dir):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "The river"}]
    with_template = TransformersGenerator(gpt2_chat_dir)
    assert with_template.render(messages) == "<|system|>be brief\n<|user|>The river\n<|assistant|>"
    without = TransformersGenerator(gpt2_dir)
    assert without.render(messages) == flatten_chat(messages) == "be brief\n\nThe river\n\n"
    # A chat prompt generates exactly what its rendered text generates.
    assert with_template.generate([messages], GREEDY) == with_template.generate([with_template.render(messages)], GREEDY)


def test_stop_strings_cut_the_output(gpt2_dir):
    gen = TransformersGenerator(gpt2_dir)
    full = gen.generate(["The river"], GenerationParams(max_new_tokens=20))[0]
    stop = full[len(full) // 2 :][:2]
    assert stop and gen.generate(["The river"], GenerationParams(max_new_tokens=20, stop=(stop,)))[0] == full[: full.find(stop)]


def test_sampling_is_reproducible_by_seed(gpt2_dir):
    gen = TransformersGenerator(gpt2_dir, batch_size=3)
    hot = GenerationParams(max_new_tokens=8, temperature=1.5, seed=7)
    first = gen.generate(PROMPTS[:3], hot)
    assert gen.generate(PROMPTS[:3], hot) == first
    assert gen.generate(PROMPTS[:3], hot.model_copy(update={"seed": 8})) != first


def test_nemotron_h_checkpoint_generates_and_batches(tmp_path):
    folder = generator(tmp_path / "nemotron", "tiny")
    params = GenerationParams(max_new_tokens=6)
    batched = TransformersGenerator(folder, batch_size=3).generate(PROMPTS[:3], params)
    assert batched == TransformersGenerator(folder, batch_size=1).generate(PROMPTS[:3], params)
    assert all(batched)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a model folder"):
        TransformersGenerator(tmp_path / "nowhere")


def test_prompt_longer_than_the_context_is_a_clear_error(gpt2_dir):
    gen = TransformersGenerator(gpt2_dir)
    with pytest.raises(InputError, match="exceeds the model's context of 1024 tokens"):
        gen.generate(["river " * 1100], GREEDY)
