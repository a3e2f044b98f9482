"""Parameter counts from the shape alone: equal to a model built on the meta device, and to published totals."""

from __future__ import annotations

import pytest

from factory.cost import parameter_counts, serving_memory
from factory.cost.published import PUBLISHED_COUNTS, SHAPES
from factory.model import PRESETS, ModelSpec, build_model, count_parameters


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_counts_equal_the_published_totals(name):
    published = PUBLISHED_COUNTS[name]
    counts = parameter_counts(SHAPES[name]())
    # the card's figure to the digits it prints; the 8B card prints every digit
    assert round(counts.total / published.unit) * published.unit == published.total
    if published.active is not None:
        assert round((counts.active - counts.embedding) / 1e8) * 100_000_000 == published.active
        assert round(counts.active / 1e8) * 100_000_000 == published.active_with_embeddings


def test_nemotron_h_8b_is_exact():
    assert parameter_counts(ModelSpec(preset="nemotron_h_8b")).total == 8_100_852_736


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_counts_equal_a_meta_device_model(name):
    counts = parameter_counts(SHAPES[name]())
    assert counts.total == count_parameters(build_model(SHAPES[name](), 131072, device="meta"))
    assert counts.total == sum(counts.by_part.values())


@pytest.mark.parametrize("name,vocab", [("tiny", 2048), ("tiny_moe", 2048), ("small_20m", 16384)])
def test_small_presets_and_the_transformers_config_agree(name, vocab):
    cfg = PRESETS[name]()
    model = build_model(cfg, vocab, device="meta")
    assert parameter_counts(cfg, vocab).total == count_parameters(model)
    assert parameter_counts(model.config).total == count_parameters(model)  # from a NemotronHConfig too


def test_moe_active_counts_top_k_of_the_routed_experts():
    cfg = PRESETS["tiny_moe"]()
    counts = parameter_counts(cfg, 2048)
    per_expert = 2 * cfg.hidden_size * cfg.moe_intermediate_size
    idle = cfg.pattern.count("E") * (cfg.moe_num_experts - cfg.moe_top_k) * per_expert
    assert counts.total - counts.active == idle
    assert parameter_counts(PRESETS["tiny"](), 2048).active == parameter_counts(PRESETS["tiny"](), 2048).total


def test_mtp_blocks_are_counted_when_configured():
    base = PRESETS["tiny_moe"]()
    with_mtp = parameter_counts(base.model_copy(update={"mtp_layers": 1}), 2048)
    assert with_mtp.by_part["mtp"] > 0
    assert with_mtp.total == parameter_counts(base, 2048).total + with_mtp.by_part["mtp"]


def test_serving_memory_nano2_9b_fits_22_gib_at_128k_and_12b_does_not():
    nine = serving_memory(SHAPES["nemotron_nano_9b_v2"](), context_len=131072, batch=1)
    twelve = serving_memory(SHAPES["nemotron_nano_12b_v2"](), context_len=131072, batch=1)
    assert nine.fits(22) and not twelve.fits(22)
    assert nine.total_gib == pytest.approx(18.69, abs=0.01)
    # KV cache: 4 attention layers x K and V x 8 heads x 128 x 131072 tokens x 2 bytes = exactly 2 GiB
    assert nine.kv_cache == 2 * 1024**3
    # SSM state: 27 Mamba layers x 128 heads x 80 x 128 states x 4 bytes
    assert nine.mamba_ssm == 27 * 128 * 80 * 128 * 4
    # doubling the batch doubles the states, not the weights
    two = serving_memory(SHAPES["nemotron_nano_9b_v2"](), context_len=131072, batch=2)
    assert (two.weights, two.kv_cache, two.mamba_ssm) == (nine.weights, 2 * nine.kv_cache, 2 * nine.mamba_ssm)


def test_serving_memory_rejects_bad_input():
    with pytest.raises(ValueError, match="context_len"):
        serving_memory(PRESETS["tiny"](), context_len=0)
    with pytest.raises(ValueError, match="unknown number format"):
        serving_memory(PRESETS["tiny"](), context_len=8, weights="int3")
