import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.errors import InputError
from factory.stages.evaluate import Config, run
from factory.stage import NullTracker, StepContext
from factory.tokens import PackedSequences


def _run(config, upstream, out):
    out.mkdir()
    ctx = StepContext("evaluate", tracker=NullTracker())
    metrics = run(config, {"model": upstream["model"], "tokens": upstream["tokens"]}, out, ctx)
    return metrics, ctx


def _hand_nll(upstream, seq_len, n_windows):
    """Mean next-token NLL, one window at a time, with a freshly loaded model."""
    model = AutoModelForCausalLM.from_pretrained(upstream["model"].path / "model").eval()
    windows = PackedSequences(upstream["tokens"].path / "valid", seq_len)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(n_windows):
            w = windows[i]  # (seq_len + 1,)
            logits = model(input_ids=w[None, :-1]).logits[0]  # (seq_len, V)
            total += F.cross_entropy(logits.float(), w[1:], reduction="sum").item()
            count += seq_len
    return total / count, count, len(windows)


def test_perplexity_matches_hand_computation(upstream, tmp_path):
    config = Config(seq_len=32, batch_size=3, max_new_tokens=4)
    metrics, ctx = _run(config, upstream, tmp_path / "out")

    n_all = len(PackedSequences(upstream["tokens"].path / "valid", 32))
    assert n_all >= 10  # the fixture's split is long enough to make several batches
    nll, count, _ = _hand_nll(upstream, 32, n_all)
    assert metrics["valid_tokens"] == count == n_all * 32
    assert metrics["valid_loss"] == pytest.approx(nll, rel=1e-5)
    assert metrics["valid_perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    # A random 2048-way model is near uniform: perplexity close to the vocabulary size.
    assert 1000 < metrics["valid_perplexity"] < 4000

    stats = json.loads((upstream["tokens"].path / "stats.json").read_text())["valid"]
    bytes_per_token = stats["bytes"] / stats["tokens"]
    assert metrics["valid_bits_per_byte"] == pytest.approx(nll / math.log(2) / bytes_per_token, rel=1e-6)

    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["metrics"] == {k: v for k, v in metrics.items() if k.startswith("valid_") and not k.endswith("_stderr")}
    assert metrics.keys() - report["metrics"].keys() == {
        "stdlib_cloze_accuracy", "stdlib_cloze_accuracy_stderr", "stdlib_cloze_target_logprob",
        "valid_loss_stderr", "valid_perplexity_stderr", "valid_bits_per_byte_stderr"}
    assert report["all_metrics"] == pytest.approx(metrics)
    # the standard error of the mean NLL over windows, and perplexity's by the delta method
    assert 0 < metrics["valid_loss_stderr"] < 0.1
    assert metrics["valid_perplexity_stderr"] == pytest.approx(metrics["valid_perplexity"] * metrics["valid_loss_stderr"])
    assert report["config"]["seq_len"] == 32
    assert report["windows"] == n_all
    assert report["model"]["fingerprint"] == upstream["model"].fingerprint
    assert ctx.tracker.metrics == []  # the executor logs what run returns
    assert ctx.tracker.datasets[0]["profile"]["tokens"] == count
    assert [p.name for p in ctx.tracker.artifacts] == ["eval_table.md"]


def test_max_batches_limits_the_windows(upstream, tmp_path):
    metrics, _ = _run(Config(seq_len=16, batch_size=2, max_batches=3, prompts=[]), upstream, tmp_path / "out")
    nll, count, _ = _hand_nll(upstream, 16, 6)
    assert metrics["valid_tokens"] == count == 6 * 16
    assert metrics["valid_loss"] == pytest.approx(nll, rel=1e-5)
    assert (tmp_path / "out" / "samples.jsonl").read_text() == ""


def test_generation_is_greedy_and_deterministic(upstream, tmp_path):
    config = Config(seq_len=32, max_batches=1, prompts=["The river city", "A quiet morning"], max_new_tokens=6)
    _run(config, upstream, tmp_path / "a")
    _run(config.model_copy(update={"seed": 123}), upstream, tmp_path / "b")
    a = (tmp_path / "a" / "samples.jsonl").read_text()
    assert a == (tmp_path / "b" / "samples.jsonl").read_text()

    samples = [json.loads(line) for line in a.splitlines()]
    assert [s["prompt"] for s in samples] == config.prompts
    tokenizer = AutoTokenizer.from_pretrained(upstream["tokens"].path / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(upstream["model"].path / "model").eval()
    for s in samples:
        ids = tokenizer(s["prompt"], return_tensors="pt").input_ids  # (1, P)
        assert s["prompt_tokens"] == ids.shape[1]
        assert 1 <= len(s["new_token_ids"]) <= 6
        # Greedy: the first new token is the argmax of the next-token logits.
        with torch.no_grad():
            assert s["new_token_ids"][0] == model(input_ids=ids).logits[0, -1].argmax().item()
        assert s["completion"] == tokenizer.decode(s["new_token_ids"], skip_special_tokens=True)


def test_split_shorter_than_a_window_is_an_input_error(upstream, tmp_path):
    with pytest.raises(InputError, match=r"valid.bin.*seq_len"):
        _run(Config(seq_len=100_000), upstream, tmp_path / "out")


def test_missing_input_is_named(upstream, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="'tokens'"):
        run(Config(), {"model": upstream["model"]}, tmp_path / "out", StepContext("evaluate"))


@pytest.mark.parametrize("fast", [True, False])
def test_samples_stop_at_the_end_of_turn_as_the_release_does(upstream, monkeypatch, fast):
    """Samples stop where the release's generation config stops: EOS and the chat template's end-of-turn marker
    (`stop_token_ids`). Stand-in: the model's own greedy first token plays the end-of-turn id, so a real model and
    decoder (the factory's, and transformers' generate for other architectures) must stop right after it."""
    from factory.stages.evaluate import samples

    tokenizer = AutoTokenizer.from_pretrained(upstream["tokens"].path / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(upstream["model"].path / "model").eval()
    prompt = "The river city"
    with torch.no_grad():
        first = model(input_ids=tokenizer(prompt, return_tensors="pt").input_ids).logits[0, -1].argmax().item()
    monkeypatch.setattr(samples, "stop_token_ids", lambda tok: [tok.eos_token_id, first])
    monkeypatch.setattr(samples, "supports_fast_decode", lambda m: fast)
    (sample,) = samples.generate_samples(model, tokenizer, Config(prompts=[prompt], max_new_tokens=8), torch.device("cpu"))
    assert sample["new_token_ids"] == [first]


def test_a_benchmark_task_file_is_a_raw_input_of_the_step(tmp_path):
    """Editing a file benchmark's items changes the step's identity, as editing any raw input does."""
    from factory.sources import input_identity, source_digests
    from factory.stages.evaluate.benchmarks import BenchmarkConfig

    items = tmp_path / "sums.jsonl"
    items.write_text('{"id": "a", "question": "1+1", "answer": "2"}\n')
    config = Config(benchmarks=[BenchmarkConfig(name="sums", source="file", task=str(items))])
    assert "benchmark_files" in Config.external_fields() and config.benchmark_files == [str(items)]
    before = source_digests("evaluate", config)["benchmark_files"]
    items.write_text('{"id": "a", "question": "10+2", "answer": "12"}\n')  # identity by listing: size
    input_identity.cache_clear()  # identities are cached for one process's planning
    assert source_digests("evaluate", config)["benchmark_files"] != before
