"""The factory's decode loop (factory.generate.decode) against transformers' `generate` and the reference step.

Every preset in factory.model.presets is a NemotronH. The small ones run as they are; the published shapes (8B,
12B, 30B-A3B) run as miniatures that keep what the decoder has to get right — the layer pattern, the query to
key-value head ratio, the Mamba group count, MoE top-k — at a width a CPU steps in milliseconds.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from factory.generate.decode import decode, supports_fast_decode
from factory.generate.hybrid_decoder import NemotronHDecoder
from factory.generate.sampling import Sampling, choose_tokens, process_logits, sequence_seed, uniforms
from factory.model.build import build_model
from factory.model.config import ModelConfig
from factory.model.presets import PRESETS

VOCAB = 96
SMALL = ("tiny", "tiny_moe", "small_20m")


def miniature(config: ModelConfig) -> ModelConfig:
    """A published preset at test width: its pattern, head ratios, Mamba groups and MoE routing kept."""
    kv = min(config.num_key_value_heads, 2)
    update = {"hidden_size": 64, "num_key_value_heads": kv, "head_dim": 8, "intermediate_size": 96,
              "num_attention_heads": kv * (config.num_attention_heads // config.num_key_value_heads),
              "mamba_num_heads": 2 * config.mamba_groups, "mamba_head_dim": 8, "ssm_state_size": 8, "chunk_size": 16}
    if config.moe_num_experts:
        update |= {"moe_num_experts": min(config.moe_num_experts, config.moe_top_k + 2), "moe_intermediate_size": 16,
                   "moe_shared_intermediate_size": 32}
    return config.model_copy(update=update)


def preset_model(name: str) -> torch.nn.Module:
    config = PRESETS[name]()
    if name not in SMALL:
        config = miniature(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(config, VOCAB).eval()


def prompts_for(lengths, seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=generator).tolist() for n in lengths]


def reference_greedy(model, prompt: list[int], max_new_tokens: int, stop: int | None) -> list[int]:
    """transformers' `generate` on one prompt alone (no padding): the completion, stop token kept."""
    ids = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop, pad_token_id=0)
    return ids[0, len(prompt):].tolist()


@pytest.mark.parametrize("name", list(PRESETS))
def test_greedy_equals_transformers_generate_on_every_preset(name):
    model = preset_model(name)
    assert supports_fast_decode(model)
    new = 6 if name == "small_20m" else 10
    # lengths across the chunk size (16 in the miniatures), a repeated prompt (prefilled once), two slots for four
    # sequences: sequences join a running batch and leave it early
    prompts = prompts_for((5, 19, 5, 3))
    prompts[2] = list(prompts[0])
    free = [reference_greedy(model, p, new, None) for p in prompts]
    assert decode(model, prompts, new, slots=2) == free
    # a stop token that one completion emits part-way: that sequence stops there, the others run on
    stop = free[1][new // 2]
    expected = [reference_greedy(model, p, new, stop) for p in prompts]
    assert any(len(e) < new for e in expected)
    assert decode(model, prompts, new, stop_ids=[stop], slots=2) == expected
    assert decode(model, prompts, new, stop_ids=[stop], slots=2, reference=True) == expected


@pytest.mark.parametrize("name", ["tiny", "tiny_moe"])
def test_greedy_equals_generate_in_bfloat16(name):
    """A release's weights are BF16: the decoder rounds where transformers' step rounds (float32 SSM state and
    convolution sums, BF16 read-out), so near-tied logits of a random model break the same way."""
    model = preset_model(name).to(torch.bfloat16)
    prompts = prompts_for((3, 8, 13, 21, 6))
    expected = [reference_greedy(model, p, 12, None) for p in prompts]
    assert decode(model, prompts, 12, slots=2) == expected
    assert decode(model, prompts, 12, slots=2, reference=True) == expected


def test_decoder_step_logits_match_the_model_forward():
    """One step of the fast and the reference decoder against the model's own cached forward."""
    model = preset_model("tiny")
    prompt = torch.tensor(prompts_for((7, 7), seed=3))
    with torch.no_grad():
        out = model(input_ids=prompt, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1)
        expected = model(input_ids=nxt[:, None], cache=out.past_key_values, use_cache=True).logits[:, -1]
    for reference in (False, True):
        decoder = NemotronHDecoder(model, 2, 16, reference=reference)
        logits, cache = decoder.prefill(prompt)
        torch.testing.assert_close(logits, out.logits[:, -1].float())
        for row in range(2):
            decoder.load(row, cache, row, 7)
        torch.testing.assert_close(decoder.step(nxt), expected.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["tiny", "tiny_moe"])
def test_sampled_same_for_every_slot_count_and_the_reference_step(name):
    model = preset_model(name)
    prompts = prompts_for((4, 9, 4, 12, 6))
    prompts = [p for p in prompts for _ in range(3)]  # three samples per prompt, as a rollout group
    seeds = [sequence_seed(7, i) for i in range(len(prompts))]
    sampling = Sampling(temperature=0.9, top_p=0.95, top_k=40)
    runs = [decode(model, prompts, 12, sampling=sampling, seeds=seeds, slots=slots) for slots in (1, 4, len(prompts))]
    runs.append(decode(model, prompts, 12, sampling=sampling, seeds=seeds, slots=4, reference=True))
    assert all(run == runs[0] for run in runs[1:])
    assert len({tuple(c) for c in runs[0]}) > len(prompts) // 3  # samples of one prompt differ
    other = decode(model, prompts, 12, sampling=sampling, seeds=[s + 1 for s in seeds], slots=4)
    assert other != runs[0]


def test_decode_leaves_a_training_model_in_training_mode():
    model = preset_model("tiny").train()
    decode(model, prompts_for((5,)), 3)
    assert model.training


def test_decode_refuses_sampling_without_seeds_and_empty_prompts():
    model = preset_model("tiny")
    with pytest.raises(ValueError, match="seed"):
        decode(model, prompts_for((5,)), 3, sampling=Sampling(temperature=1.0))
    with pytest.raises(ValueError, match="no tokens"):
        decode(model, [[]], 3)
    assert decode(model, [], 3) == []


def test_uniforms_depend_only_on_seed_and_counter():
    seeds = torch.tensor([sequence_seed(0, i) for i in range(4)])
    counters = torch.tensor([0, 5, 0, 2])
    u = uniforms(seeds, counters, 50)
    assert u.shape == (4, 50) and float(u.min()) > 0 and float(u.max()) < 1
    torch.testing.assert_close(uniforms(seeds[2:3], counters[2:3], 50), u[2:3], rtol=0, atol=0)
    assert not torch.equal(uniforms(seeds, counters + 1, 50), u)


def test_processed_logits_equal_transformers_warpers():
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(0))
    sampling = Sampling(temperature=0.7, top_p=0.8, top_k=10)
    warpers = transformers.LogitsProcessorList([
        transformers.TemperatureLogitsWarper(0.7), transformers.TopKLogitsWarper(10), transformers.TopPLogitsWarper(0.8)])
    expected = warpers(torch.zeros(3, 1, dtype=torch.long), logits.clone())
    torch.testing.assert_close(process_logits(logits, sampling), expected, rtol=0, atol=0)


def test_sampled_tokens_follow_the_softmax():
    """Gumbel-max over the hashed uniforms draws from softmax(logits / T): frequencies over many seeds."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20000, 4)
    seeds = torch.tensor([sequence_seed(3, i) for i in range(20000)])
    tokens = choose_tokens(logits, Sampling(temperature=1.5), seeds, torch.zeros(20000, dtype=torch.long))
    frequencies = torch.bincount(tokens, minlength=4).float() / 20000
    torch.testing.assert_close(frequencies, (logits[0] / 1.5).softmax(-1), rtol=0, atol=0.015)
