"""One generator settings type for every stage that generates: what it opens, what it refuses, the old spellings
each stage had refused with the new one named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from factory.curate.math.config import MathCleanup
from factory.errors import SpecError
from factory.generate import GenerationParams, OpenAIGenerator, TransformersGenerator
from factory.generate.settings import GeneratorSettings
from factory.stages import evaluate, posttrain_data, rl, synth
from tests.builders import generator

SERVER = {"kind": "openai", "base_url": "http://vllm:8000", "model": "m"}


def test_every_generating_stage_takes_the_one_type():
    assert isinstance(synth.Config().generator, GeneratorSettings)
    assert isinstance(MathCleanup().generator, GeneratorSettings)
    assert isinstance(posttrain_data.Config().teacher, GeneratorSettings)  # adds the procedural solver and a name
    assert isinstance(evaluate.Config().generator, GeneratorSettings)
    assert isinstance(rl.Config().rollout.generator, GeneratorSettings)


def test_open_builds_the_generator_the_settings_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "secret")
    served = GeneratorSettings(**SERVER, api_key_env="MY_KEY", max_retries=1, max_concurrency=3, batch_size=4).open()
    assert isinstance(served, OpenAIGenerator) and served.model_id == "m"
    assert (served.max_retries, served.max_concurrency, served.batch_size) == (1, 3, 4)
    assert served._client.headers["authorization"] == "Bearer secret"
    served.close()
    with pytest.raises(SpecError, match=r"generator.model_dir: set it to a model folder"):
        GeneratorSettings().open()
    folder = generator(tmp_path / "gpt2")
    local = GeneratorSettings(batch_size=2).open(folder, model_id="store://pretrain/abcd")  # the step's model input
    assert isinstance(local, TransformersGenerator) and local.batch_size == 2 and local.model_id == "store://pretrain/abcd"
    assert GeneratorSettings(model_dir=str(folder)).open("elsewhere").model_id == "gpt2"  # model_dir wins


def test_batch_size_changes_what_a_local_model_samples(tmp_path):
    """Why batch_size is in the fingerprint (evaluate's copy had it there, synth's left it out): a local model seeds
    its sampling per batch."""
    folder = generator(tmp_path / "gpt2")
    prompts = ["a b c", "d e f", "g h i", "j k l"]
    params = GenerationParams(max_new_tokens=8, temperature=1.0, seed=0)
    one, four = (TransformersGenerator(folder, batch_size=n).generate(prompts, params) for n in (1, 4))
    assert one != four
    assert "batch_size" in GeneratorSettings().result_fields() and "device" not in GeneratorSettings().result_fields()


@pytest.mark.parametrize("fields, message", [
    ({"kind": "openai"}, "generator kind 'openai' needs base_url and model"),
    ({"base_url": "http://vllm:8000"}, "generator kind 'transformers' does not read base_url; remove it"),
    ({**SERVER, "model_dir": "m", "device": "cuda"}, "generator kind 'openai' does not read model_dir, device; remove them"),
])
def test_fields_of_the_other_kind_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        GeneratorSettings(**fields)
    with pytest.raises(ValidationError, match="teacher kind 'procedural' does not read model"):
        posttrain_data.Config(teacher={"model": "m"})


@pytest.mark.parametrize("make, message", [
    (lambda: evaluate.Config(generator={"kind": "local"}), r"generator.kind: 'local' is now 'transformers'"),
    (lambda: evaluate.Config(generator={"max_new_tokens": 8, "temperature": 0.7}),
     r"generator.max_new_tokens: sampling is set in `generation` now \(generation.max_new_tokens, generation.temperature\)"),
    (lambda: rl.Config(rollout={"endpoint": {"base_url": "http://vllm:8000", "model": "policy"}}),
     r"endpoint: rollouts from a server are set in rollout.generator now"),
    (lambda: MathCleanup(kind="openai", base_url="http://vllm:8000", model="m"),
     r"kind, base_url, model: the cleanup's model is set in cleanup.generator now"),
])
def test_old_spellings_are_refused_naming_the_new_one(make, message):
    with pytest.raises(ValidationError, match=message):
        make()


def test_the_local_rl_sampler_refuses_what_it_cannot_honour():
    with pytest.raises(ValidationError, match=r"generator.batch_size, reload_url: the local sampler is the policy"):
        rl.Config(rollout={"generator": {"batch_size": 4}, "reload_url": "http://vllm:8000/reload"})
    served = rl.Config(rollout={"generator": SERVER, "reload_url": "http://vllm:8000/reload"}).rollout
    assert served.generator.kind == "openai" and served.reload_url == "http://vllm:8000/reload"


def test_evaluate_samples_benchmark_answers_with_generation_params():
    config = evaluate.Config(generation={"max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 5, "stop": ["\n"]})
    assert config.generation == GenerationParams(max_new_tokens=8, temperature=0.7, top_p=0.9, seed=5, stop=("\n",))
    assert evaluate.Config().generation.max_new_tokens == 256  # the answers' length before, as GeneratorChoice had it
