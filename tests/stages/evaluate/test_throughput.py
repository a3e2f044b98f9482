"""The evaluate stage's throughput measurement on the tiny checkpoint: the factory's decoder against transformers'
cached forward and `generate`, the hybrid against a transformer of equal parameters, with the machine recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from factory.generate.decode_speed import is_speed_metric, machine, machine_line
from factory.stage import NullTracker, StepContext
from factory.stages.evaluate import Config, run
from factory.stages.evaluate.samples import load_model
from factory.stages.evaluate.throughput import matched_transformer

QUICK = {"seq_len": 16, "batch_size": 4, "max_batches": 1, "tasks": [], "prompts": []}


@pytest.fixture(scope="module")
def measured(upstream, tmp_path_factory):
    """(metrics, eval.json, the output folder, ctx) of a step measuring at contexts 64 and 192, batch 2 (and 1)."""
    out = tmp_path_factory.mktemp("throughput") / "out"
    out.mkdir()
    ctx = StepContext("evaluate", tracker=NullTracker())
    config = Config(**QUICK, throughput_contexts=[64, 192], throughput_batch=2, throughput_baseline=True)
    metrics = run(config, {"model": upstream["model"], "tokens": upstream["tokens"]}, out, ctx)
    return metrics, json.loads((out / "eval.json").read_text()), out, ctx


def test_cache_memory_grows_only_in_attention_layers(measured, upstream):
    metrics, *_ = measured
    hf = AutoConfig.from_pretrained(upstream["model"].path / "model")
    attention_layers = hf.layers_block_type.count("full_attention")
    # the decoder's keys and values, (H_kv, T, D) float32 each per attention layer and sequence; 2 sequences
    per_token = attention_layers * 2 * hf.num_key_value_heads * hf.head_dim * 4
    grown = (metrics["cache_mib@192"] - metrics["cache_mib@64"]) * 2**20
    assert grown == pytest.approx(2 * 128 * per_token)
    # the matched transformer: attention where the Mamba layers were, so every mixer layer grows a KV cache
    mixers = attention_layers + hf.layers_block_type.count("linear_attention")
    grown = (metrics["transformer_cache_mib@192"] - metrics["transformer_cache_mib@64"]) * 2**20
    assert grown == pytest.approx(2 * 128 * per_token / attention_layers * mixers)
    assert metrics["transformer_cache_mib@192"] > metrics["cache_mib@192"]


def test_metrics_are_the_decoders_with_their_ratios(measured):
    metrics, report, *_ = measured
    cells = report["throughput"]["cells"]
    assert len(cells) == 2 * 2 * 2  # contexts x batches (1 and the configured 2) x (this model, transformer)
    assert {(c["model"], c["context"], c["batch"]) for c in cells} == {
        (m, c, b) for m in ("this model", "transformer") for c in (64, 192) for b in (1, 2)}
    for c in (64, 192):
        mine = next(x for x in cells if (x["model"], x["context"], x["batch"]) == ("this model", c, 2))
        theirs = next(x for x in cells if (x["model"], x["context"], x["batch"]) == ("transformer", c, 2))
        assert metrics[f"decode_tokens_per_s@{c}"] == mine["decoder_tokens_per_s"] > 0
        assert metrics[f"hf_decode_tokens_per_s@{c}"] == mine["forward_tokens_per_s"] > 0
        assert metrics[f"decoder_speedup@{c}"] == pytest.approx(mine["decoder_tokens_per_s"] / mine["forward_tokens_per_s"])
        assert metrics[f"speed_vs_transformer@{c}"] == pytest.approx(
            mine["decoder_tokens_per_s"] / theirs["decoder_tokens_per_s"])
        assert metrics[f"cache_mib@{c}"] == mine["state_bytes"] / 2**20
    generation = report["throughput"]["generation"]
    assert generation["prompts"] == 2
    if not torch.cuda.is_available():  # greedy on CPU: the decoder gives generate's tokens (GPU kernels may round apart)
        assert generation["same_tokens"] is True
    assert metrics["decoder_speedup_generate"] == pytest.approx(
        generation["decoder_tokens_per_s"] / generation["generate_tokens_per_s"])
    assert report["all_metrics"] == metrics


def test_the_record_table_and_plot_name_the_machine(measured):
    _, report, out, ctx = measured
    record = report["throughput"]["machine"]
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the stage evaluates
    here = machine(device)
    assert (record["device"], record["cpu"], record["gpu"], record["torch_threads"]) == (
        device, here["cpu"], here["gpu"], torch.get_num_threads())
    assert json.loads((out / "throughput.json").read_text()) == report["throughput"]
    lines = (out / "throughput.md").read_text().splitlines()
    assert lines[0] == f"Measured on {machine_line(record)}."
    head = lines.index("| context | batch | this model tokens/s | transformer tokens/s | this model / transformer | "
                       "this model cache MiB | transformer cache MiB |")
    assert [row.split(" | ")[:2] for row in lines[head + 2 : head + 6]] == [["| 64", "1"], ["| 64", "2"], ["| 192", "1"], ["| 192", "2"]]
    assert "| generate tokens/s | decoder tokens/s | decoder / generate | same tokens |" in lines
    assert (out / "throughput.png").stat().st_size > 1000
    assert {"throughput.png", "throughput.md", "throughput.json"} <= {p.name for p in ctx.tracker.artifacts}


def test_the_matched_transformer_has_the_hybrids_parameters(upstream):
    hybrid = load_model(upstream["model"].path / "model")
    transformer = matched_transformer(hybrid)
    kinds = transformer.config.layers_block_type
    assert "linear_attention" not in kinds and kinds.count("full_attention") == hybrid.config.layers_block_type.count(
        "full_attention") + hybrid.config.layers_block_type.count("linear_attention")

    def count(m):
        return sum(p.numel() for p in m.parameters())

    unit = kinds.count("mlp") * 2 * hybrid.config.hidden_size  # one unit of MLP width
    assert abs(count(transformer) - count(hybrid)) <= unit / 2
    assert transformer.config.intermediate_size != hybrid.config.intermediate_size


def test_without_contexts_nothing_is_measured(upstream, tmp_path: Path):
    (tmp_path / "out").mkdir()
    metrics = run(Config(**QUICK), {"model": upstream["model"], "tokens": upstream["tokens"]}, tmp_path / "out",
                  StepContext("evaluate", tracker=NullTracker()))
    assert not [k for k in metrics if "tokens_per_s" in k or "cache_mib" in k]
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["throughput"] is None
    assert not (tmp_path / "out" / "throughput.md").exists()


def test_every_throughput_metric_is_known_as_a_speed_metric(measured):
    metrics, *_ = measured
    speed = [k for k in metrics if is_speed_metric(k)]
    assert len(speed) == 2 * 7 + 3  # per context: 7 figures at the configured batch; 3 of generation
    assert not [k for k in metrics if not is_speed_metric(k) and ("tokens_per_s" in k or "@" in k)]
