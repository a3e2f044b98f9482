"""The reasoning switch and thinking budgets against a real OpenAI-compatible server: `transformers serve` serving a
tiny model fine-tuned on additions in both modes gives, per mode, the in-process replies prompt by prompt (the think
block included, which the server parses out as `reasoning_content` and the client writes back)."""

from __future__ import annotations

import json
from functools import partial

import pytest

from factory.chat.records import read_prompts
from factory.generate import GenerationParams, OpenAIGenerator, TransformersGenerator
from factory.generate.settings import GeneratorSettings
from factory.generate.transformers_model import render_chat
from factory.stage import Artifact, StepContext
from factory.stages import evaluate, sft
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from tests.builders import addition_heldout, additions, conversations
from tests.spine import transformers_serve


@pytest.fixture(scope="module")
def tuned(chat_checkpoint, tmp_path_factory):
    """A tiny NemotronH after 60 SFT steps on additions in both modes (it follows the switch), and 8 prompts."""
    root = tmp_path_factory.mktemp("budget_serve")
    data = conversations(root / "data", additions(150), heldout=addition_heldout(8))
    out = root / "sft"
    out.mkdir()
    sft.run(sft.Config(steps=60, micro_batch_size=8, lr=3e-3, seq_len=128, checkpoint_interval=0, log_interval=10),
            {"model": chat_checkpoint, "data": data}, out, StepContext("sft"))
    return out / "model", [p.chat("on")[1:] for p in read_prompts(data.path / "heldout.jsonl")]


@pytest.fixture(scope="module")
def server(tuned, tmp_path_factory):
    with transformers_serve(tuned[0], tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.mark.slow
def test_served_replies_per_mode_equal_the_in_process_ones(tuned, server):
    folder, questions = tuned
    local = TransformersGenerator(folder, batch_size=1)
    gen = OpenAIGenerator(server, str(folder), max_concurrency=2, max_retries=0)
    try:
        for mode in ("on", "off"):
            prompts = [[{"role": "system", "content": f"detailed thinking {mode}"}, *q] for q in questions]
            params = GenerationParams(max_new_tokens=24, reasoning=mode)
            served = gen.generate(prompts, params)
            assert served == local.generate(prompts, params), mode
            assert all(r.startswith("<think>") == (mode == "on") for r in served), served
    finally:
        gen.close()


@pytest.mark.slow
def test_served_budgeted_replies_equal_the_in_process_ones(tuned, server):
    folder, questions = tuned
    prompts = [[{"role": "system", "content": "detailed thinking on"}, *q] for q in questions]
    local = TransformersGenerator(folder, batch_size=1)
    # transformers serve refuses `continue_final_message`: the cut reply goes on as text, the prompt rendered here
    gen = OpenAIGenerator(server, str(folder), max_concurrency=2, max_retries=0,
                          render=partial(render_chat, local.tokenizer))
    try:
        for budget in (0, 3):
            params = GenerationParams(max_new_tokens=24, reasoning="on", thinking_budget=budget, answer_budget=12)
            assert gen.generate(prompts, params) == local.generate(prompts, params), budget
    finally:
        gen.close()


@pytest.mark.slow
def test_evaluate_through_the_server_gives_the_in_process_scores_per_mode_and_budget(tuned, server, tmp_path):
    folder, _ = tuned
    model = Artifact(folder.parent, {"fingerprint": "sft", "kind": "checkpoint", "stage": "sft"})
    data = Artifact(folder.parent.parent / "data", {"fingerprint": "data", "kind": "conversations"})
    results = {}
    for kind in ("openai", "transformers"):
        out = tmp_path / kind
        out.mkdir()
        where = {"base_url": server, "model": str(folder)} if kind == "openai" else {}
        config = evaluate.Config(perplexity=False, tasks=[], prompts=[], budgets=[0, 3],
                                 generator=GeneratorSettings(kind=kind, batch_size=1, **where),
                                 generation={"max_new_tokens": 24},
                                 benchmarks=[BenchmarkConfig(name="sums", source="heldout")])
        metrics = evaluate.run(config, {"model": model, "data": data}, out, StepContext("evaluate"))
        records = [json.loads(line) for line in (out / "benchmarks.jsonl").read_text().splitlines()]
        results[kind] = (metrics, records)
    (served, served_records), (local, local_records) = results["openai"], results["transformers"]
    assert served_records == local_records  # prompt by prompt, every mode and budget
    assert {k: v for k, v in served.items()} == pytest.approx(local, nan_ok=True)
    assert {r["mode"] for r in served_records} == {"on", "off"} and {r["budget"] for r in served_records} == {None, 0, 3}
