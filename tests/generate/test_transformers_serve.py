"""The endpoint path against a real OpenAI-compatible server: `transformers serve` (extra
`transformers[serving]`) serving the factory's own tiny release on 127.0.0.1, on CPU.

No stand-in here: the stand-in server (tests/stages/synth/fake_openai.py) accepted what `transformers serve`
refuses (a list of prompts per /v1/completions request), so the client is checked against the real one.
"""

from __future__ import annotations


import pytest

from factory.stages import evaluate, release
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.generate import GenerationParams, OpenAIGenerator, TransformersGenerator
from factory.generate.settings import GeneratorSettings
from factory.stage import NullTracker, StepContext
from tests.builders import stage_output
from tests.spine import transformers_serve

PROMPTS = ["The river", "A small village near the", "Students walk", "The old bridge", "Water"]
GREEDY = GenerationParams(max_new_tokens=8)


@pytest.fixture(scope="module")
def upstream(upstream, tmp_path_factory):
    """The session's tiny model and tokens (tests/conftest.py), evaluated and released."""
    root = tmp_path_factory.mktemp("serve_upstream")
    model, tokens = upstream["model"], upstream["tokens"]
    evaluation = stage_output("evaluate", evaluate.Config(seq_len=32, max_batches=1, tasks=[], prompts=[]),
                              {"model": model, "tokens": tokens}, root / "evaluation")
    out = root / "release"
    out.mkdir()
    release.run(release.Config(model_name="tiny-served"), {"model": model, "tokens": tokens, "evaluation": evaluation},
                out, StepContext("release", tracker=NullTracker()))
    return {"model": model, "tokens": tokens, "release": out}


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    """`transformers serve RELEASE` on a free loopback port; its log goes to a file the failure message names."""
    with transformers_serve(upstream["release"], tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, str(upstream["release"])


def test_plain_prompts_give_the_in_process_model_s_greedy_completions(server, upstream):
    url, model = server
    gen = OpenAIGenerator(url, model, batch_size=4, max_concurrency=2, max_retries=0)
    try:
        served = gen.generate(PROMPTS, GREEDY)
    finally:
        gen.close()
    # transformers serve answers 400 "prompt must be a string" to a list: the client went one prompt per request
    assert gen.one_prompt_per_request
    local = TransformersGenerator(upstream["release"], batch_size=1).generate(PROMPTS, GREEDY)
    assert served == local
    assert sum(bool(text) for text in served) >= 3, served  # not an empty comparison: most prompts got text


def test_evaluate_scores_benchmarks_through_the_server_as_it_does_in_process(server, upstream, tmp_path):
    url, model = server
    # plain prompts that fit the tiny model's context (the local generator refuses longer ones and counts them
    # as unanswered, while the server takes them: the two paths differ there by design)
    benchmarks = [BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic", size=4, seed=1, samples=2)]
    quick = dict(seq_len=16, batch_size=4, max_batches=1, tasks=[], prompts=[], benchmarks=benchmarks)
    results = {}
    for kind in ("openai", "transformers"):
        out = tmp_path / kind
        out.mkdir()
        where = {"base_url": url, "model": model} if kind == "openai" else {}
        generator = GeneratorSettings(kind=kind, batch_size=1, **where)
        metrics = evaluate.run(evaluate.Config(**quick, generator=generator, generation={"max_new_tokens": 12}),
                               {"model": upstream["model"], "tokens": upstream["tokens"]}, out,
                               StepContext("evaluate", tracker=NullTracker()))
        records = (out / "benchmarks.jsonl").read_text().splitlines()
        results[kind] = (metrics, records)
    served, local = results["openai"], results["transformers"]
    assert len(served[1]) == 4
    arith = {k: v for k, v in served[0].items() if k.startswith("arith")}
    assert arith["arith_items"] == 4 and arith["arith_unanswered"] == 0
    assert arith == {k: v for k, v in local[0].items() if k.startswith("arith")}
    assert served[1] == local[1]  # the same completions, verdicts and reasons, item by item
