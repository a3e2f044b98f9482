"""Importance and surgery on a random tiny NemotronH (two Mamba groups, two attention layers): exact checks."""

from __future__ import annotations

import pytest
import torch

from factory.stages.compress.importance import Importance, measure_importance
from factory.stages.compress.config import PruneTarget
from factory.stages.compress.surgery import pattern_of, prune_model
from factory.errors import SpecError
from factory.model import build_model
from tests.builders import TEACHER

VOCAB = 97


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(TEACHER, VOCAB).eval()
    with torch.no_grad():  # make the Mamba state matter: the default init leaves dt tiny
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def windows():
    return torch.randint(0, VOCAB, (4, 17), generator=torch.Generator().manual_seed(1))


def _uniform(model) -> Importance:
    c = model.config
    kinds = c.layers_block_type
    return Importance(
        hidden=torch.ones(c.hidden_size),
        mlp={i: torch.ones(c.intermediate_size) for i, k in enumerate(kinds) if k == "mlp"},
        attn_heads={i: torch.ones(c.num_attention_heads) for i, k in enumerate(kinds) if k == "full_attention"},
        mamba_heads={i: torch.ones(c.mamba_num_heads) for i, k in enumerate(kinds) if k == "linear_attention"},
        mamba_dims={i: torch.ones(c.mamba_head_dim) for i, k in enumerate(kinds) if k == "linear_attention"},
        block_influence=torch.ones(len(kinds)),
        loss_increase=torch.ones(len(kinds)),
    )


def _logits(model, windows):
    with torch.no_grad():
        return model(input_ids=windows, use_cache=False).logits


def test_importance_sees_silenced_units(model, windows):
    """A neuron whose up_proj row is zero has relu2(0) = 0 at down_proj's input; a Mamba head whose x rows of
    in_proj are zero has a zero x slice: both score exactly 0, the rest do not."""
    m = build_model(TEACHER, VOCAB).eval()
    m.load_state_dict(model.state_dict())
    c = m.config
    with torch.no_grad():
        m.model.layers[2].mixer.up_proj.weight[5].zero_()
        inner = c.mamba_num_heads * c.mamba_head_dim
        head = 3
        m.model.layers[0].mixer.in_proj.weight[inner + head * c.mamba_head_dim: inner + (head + 1) * c.mamba_head_dim].zero_()
    imp = measure_importance(m, windows, layer_loss=True)
    assert imp.mlp[2][5] == 0 and (imp.mlp[2].count_nonzero() == c.intermediate_size - 1)
    assert imp.mamba_heads[0][head] == 0 and imp.mamba_heads[0].count_nonzero() == c.mamba_num_heads - 1
    assert set(imp.attn_heads) == {1, 4} and imp.attn_heads[1].shape == (4,)
    assert imp.mamba_dims[3].shape == (c.mamba_head_dim,)
    assert imp.hidden.shape == (c.hidden_size,) and bool((imp.hidden > 0).all())
    assert ((imp.block_influence > 0) & (imp.block_influence < 2)).all()
    assert imp.loss_increase.shape == (6,) and torch.isfinite(imp.loss_increase).all()


def test_no_op_target_keeps_logits(model, windows):
    pruned = prune_model(model, _uniform(model), PruneTarget())
    torch.testing.assert_close(_logits(pruned, windows), _logits(model, windows), rtol=0, atol=0)


def test_dropping_silent_neurons_and_heads_is_exact(model, windows):
    """MLP neurons with zero down_proj columns and query heads (one per KV group) with zero o_proj columns,
    ranked lowest, are removed without changing the logits; surgery keeps the rest in order."""
    m = build_model(TEACHER, VOCAB).eval()
    m.load_state_dict(model.state_dict())
    imp = _uniform(m)
    silent_neurons = torch.arange(0, 128, 2)  # half the neurons
    silent_heads = [1, 2]  # head 1 of KV group 0 (heads 0,1) and head 2 of KV group 1 (heads 2,3)
    with torch.no_grad():
        for i in (2, 5):
            m.model.layers[i].mixer.down_proj.weight[:, silent_neurons] = 0
            imp.mlp[i][silent_neurons] = 0.1
        for i in (1, 4):
            for h in silent_heads:
                m.model.layers[i].mixer.o_proj.weight[:, h * 16:(h + 1) * 16] = 0
                imp.attn_heads[i][h] = 0.1
    pruned = prune_model(m, imp, PruneTarget(intermediate_size=64, num_attention_heads=2))
    assert pruned.config.intermediate_size == 64 and pruned.config.num_attention_heads == 2
    torch.testing.assert_close(_logits(pruned, windows), _logits(m, windows), rtol=1e-5, atol=1e-5)
    # heads 0 and 3 stay: q rows 0..15 and 48..63
    q_old, q_new = m.model.layers[1].mixer.q_proj.weight, pruned.model.layers[1].mixer.q_proj.weight
    torch.testing.assert_close(q_new, torch.cat([q_old[0:16], q_old[48:64]]), rtol=0, atol=0)


def test_mamba_group_aware_slices(model):
    """8 heads in 2 groups -> 4 heads (2 per group, each group ranks its own), head_dim 16 -> 8: in_proj's
    [z | x | B,C | dt] rows, conv1d, dt_bias, A_log, D, the grouped norm and out_proj keep the same heads."""
    imp = _uniform(model)
    imp.mamba_heads[0] = torch.tensor([9.0, 1, 8, 2, 3, 7, 6, 1])  # group 0 keeps 0, 2; group 1 keeps 5, 6
    imp.mamba_dims[0] = torch.arange(16.0)  # keeps dims 8..15
    pruned = prune_model(model, imp, PruneTarget(mamba_num_heads=4, mamba_head_dim=8))
    old, new = model.model.layers[0].mixer, pruned.model.layers[0].mixer
    c = model.config
    heads, dims = torch.tensor([0, 2, 5, 6]), torch.arange(8, 16)
    x = (heads[:, None] * 16 + dims).flatten()
    inner, bc = 128, 2 * c.n_groups * c.ssm_state_size
    rows = torch.cat([x, inner + x, 2 * inner + torch.arange(bc), 2 * inner + bc + heads])
    torch.testing.assert_close(new.in_proj.weight, old.in_proj.weight[rows], rtol=0, atol=0)
    torch.testing.assert_close(new.conv1d.weight, old.conv1d.weight[torch.cat([x, inner + torch.arange(bc)])], rtol=0, atol=0)
    for name in ("dt_bias", "A_log", "D"):
        torch.testing.assert_close(getattr(new, name), getattr(old, name)[heads], rtol=0, atol=0)
    torch.testing.assert_close(new.norm.weight, old.norm.weight[x], rtol=0, atol=0)
    torch.testing.assert_close(new.out_proj.weight, old.out_proj.weight[:, x], rtol=0, atol=0)
    assert (new.n_groups, new.ssm_state_size, new.num_heads, new.head_dim) == (2, 16, 4, 8)
    assert new.norm.group_size == 16  # inner 32 over 2 groups: each norm group is one SSM group's heads


def test_depth_pruning_drops_an_attention_layer_and_stock_transformers_generates(model, windows, tmp_path):
    from transformers import AutoModelForCausalLM

    imp = _uniform(model)
    imp.block_influence = torch.tensor([0.5, 0.4, 0.3, 0.6, 0.01, 0.2])  # layer 4 is the second attention layer
    target = PruneTarget(hidden_size=48, mamba_num_heads=4, drop_layers=1, layer_metric="block_influence")
    pruned = prune_model(model, imp, target)
    assert pattern_of(model.config) == "M*-M*-" and pattern_of(pruned.config) == "M*-M-"
    pruned.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "NemotronHForCausalLM" and loaded.config.n_groups == 2
    torch.testing.assert_close(_logits(loaded, windows), _logits(pruned, windows), rtol=0, atol=0)
    out = loaded.generate(windows[:1, :5], max_new_tokens=6, do_sample=False)
    assert out.shape == (1, 11)
    # greedy generation with the cache equals the argmax of a full forward pass over the generated text
    full = _logits(loaded, out[:, :-1])[0, 4:].argmax(-1)
    assert torch.equal(full, out[0, 5:])


def test_bad_targets_name_the_field(model):
    imp = _uniform(model)
    with pytest.raises(SpecError, match="target.num_attention_heads"):
        prune_model(model, imp, PruneTarget(num_attention_heads=3))
    with pytest.raises(SpecError, match="target.mamba_num_heads"):
        prune_model(model, imp, PruneTarget(mamba_num_heads=5))
    with pytest.raises(SpecError, match="target.hidden_size"):
        prune_model(model, imp, PruneTarget(hidden_size=65))


def test_nano2_12b_pruned_to_9b_shape_matches_published_count():
    """Nano 2: 12B -> 9B by Minitron (hidden 5120 -> 4480, FFN 20480 -> 15680, 62 -> 56 layers). Surgery's
    config path, with layer scores that drop the six layers the release dropped, gives the 9B shape, whose
    parameter count and serving memory `factory.cost` reports against the model card."""
    from factory.stages.compress.surgery import kept_layers, pruned_config
    from factory.cost import parameter_counts, serving_memory
    from factory.cost.published import PUBLISHED_COUNTS, nemotron_nano_9b_v2
    from factory.model import PRESETS

    big = PRESETS["nemotron_nano_12b_v2"]().to_hf(131072)
    small = nemotron_nano_9b_v2()
    src, dst = pattern_of(big), small.pattern
    keep, j = [], 0  # the first subsequence embedding of the 9B pattern in the 12B one
    for i, ch in enumerate(src):
        if j < len(dst) and ch == dst[j] and len(src) - i > len(dst) - j - 1:
            keep.append(i)
            j += 1
    assert j == len(dst)
    scores = torch.tensor([1.0 if i in keep else 0.0 for i in range(len(src))])
    imp = Importance(hidden=torch.ones(5120), loss_increase=scores, block_influence=scores)
    target = PruneTarget(hidden_size=4480, intermediate_size=15680, drop_layers=len(src) - len(dst))
    assert kept_layers(big, imp, target) == keep
    cfg = pruned_config(big, target, keep)
    assert pattern_of(cfg) == dst
    published = PUBLISHED_COUNTS["nemotron_nano_9b_v2"]
    params = parameter_counts(cfg).total
    assert params == parameter_counts(small).total
    assert abs(params - published.total) < published.unit / 2
    memory = serving_memory(cfg, 131072)
    assert memory.total_gib < 22 < serving_memory(big, 131072).total_gib  # "128k context in 22 GiB"
