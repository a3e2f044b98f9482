"""Width and depth surgery on a transformers `NemotronHForCausalLM`: a valid smaller config and its weights.

Given `Importance` scores and a `PruneTarget`, `prune_model` keeps the most important

- residual channels (embedding, every norm, the input columns of every linear reading the stream, the
  output rows of every linear writing it, lm_head);
- MLP neurons (up_proj rows, down_proj columns), the same count in every MLP layer;
- attention query heads, ranked *within each KV group* and the same number kept per group (all KV heads stay);
- Mamba heads, ranked within their SSM group (same number kept per group, so groups and the grouped
  RMSNorm stay aligned), and Mamba head_dim channels (the same channels in every head: head_dim is one
  config value). The number of groups and the state size stay fixed. Per layer the slices are consistent:

      in_proj rows   [ z (inner) | x (inner) | B,C (2 * groups * state) | dt (heads) ]
      conv1d         [ x | B,C ] channels        dt_bias, A_log, D   [heads]
      norm.weight    inner channels              out_proj            inner columns

- layers: the `drop_layers` least important blocks by `layer_metric` are removed and the layer pattern
  string shrinks accordingly (`layers_block_type` of the config).

The result is a fresh `NemotronHForCausalLM` built from the smaller config and loaded strictly with the
sliced tensors, so it saves as a plain transformers folder.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import NemotronHForCausalLM

from factory.errors import SpecError
from factory.model.config import LAYER_TYPES
from factory.stages.compress.config import PruneTarget
from factory.stages.compress.importance import Importance

CHAR_OF = {v: k for k, v in LAYER_TYPES.items()}


def pattern_of(hf_config) -> str:
    """The factory pattern string (M * - E) of a NemotronHConfig."""
    return "".join(CHAR_OF[t] for t in hf_config.layers_block_type)


def check_target(hf_config, target: PruneTarget, where: str = "target", width_multiple_of: int | None = None) -> None:
    """Raise `SpecError` naming the field when `target` is not a valid shrink of `hf_config`, or gives an attention or
    Mamba inner width (heads x head width) that is not a multiple of `width_multiple_of` (the config checks the widths it
    names itself when the spec is loaded; these need the model's head widths)."""
    c = hf_config
    m = width_multiple_of
    if m and target.num_attention_heads is not None and target.num_attention_heads * c.head_dim % m:
        raise SpecError(f"{where}.num_attention_heads: {target.num_attention_heads} heads of {c.head_dim} make an attention width of "
                        f"{target.num_attention_heads * c.head_dim}, not a multiple of width_multiple_of = {m}")
    mamba_width = (target.mamba_num_heads or c.mamba_num_heads) * (target.mamba_head_dim or c.mamba_head_dim)
    if m and (target.mamba_num_heads or target.mamba_head_dim) and mamba_width % m:
        field = "mamba_num_heads" if target.mamba_num_heads else "mamba_head_dim"
        raise SpecError(f"{where}.{field}: the Mamba inner width (heads x head width) would be {mamba_width}, not a multiple of "
                        f"width_multiple_of = {m}")
    limits = {
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_attention_heads": c.num_attention_heads,
        "mamba_num_heads": c.mamba_num_heads,
        "mamba_head_dim": c.mamba_head_dim,
    }
    for name, current in limits.items():
        value = getattr(target, name)
        if value is not None and value > current:
            raise SpecError(f"{where}.{name}: {value} exceeds the model's {current}; pruning only shrinks")
    if target.num_attention_heads is not None and target.num_attention_heads % c.num_key_value_heads:
        raise SpecError(f"{where}.num_attention_heads: {target.num_attention_heads} must be a multiple of the {c.num_key_value_heads} KV heads")
    if target.mamba_num_heads is not None and target.mamba_num_heads % c.n_groups:
        raise SpecError(f"{where}.mamba_num_heads: {target.mamba_num_heads} must be a multiple of the {c.n_groups} Mamba groups")
    if target.drop_layers >= len(c.layers_block_type):
        raise SpecError(f"{where}.drop_layers: {target.drop_layers} would leave no layer of {len(c.layers_block_type)}")


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in ascending index order (so the kept slices keep their order)."""
    return torch.topk(scores.float(), k).indices.sort().values


def _top_per_group(scores: torch.Tensor, groups: int, k_per_group: int) -> torch.Tensor:
    """Top `k_per_group` indices within each of `groups` consecutive equal groups, ascending."""
    per = scores.numel() // groups
    kept = [g * per + _top(scores[g * per : (g + 1) * per], k_per_group) for g in range(groups)]
    return torch.cat(kept)


def _expand(heads: torch.Tensor, dims: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Channel indices of (kept heads x kept dims) in a [heads * head_dim] layout."""
    return (heads[:, None] * head_dim + dims[None, :]).flatten()


def kept_layers(hf_config, importance: Importance, target: PruneTarget) -> list[int]:
    """Indices of the blocks that stay, in order (NemotronH blocks, or a dense model's decoder layers)."""
    types = getattr(hf_config, "layers_block_type", None)
    n = len(types) if types is not None else hf_config.num_hidden_layers
    if not target.drop_layers:
        return list(range(n))
    scores = importance.loss_increase if target.layer_metric == "loss_increase" else importance.block_influence
    if scores is None:
        raise SpecError(f"layer_metric: {target.layer_metric} was not measured (measure_importance(layer_loss=True))")
    dropped = set(torch.topk(-scores.float(), target.drop_layers).indices.tolist())
    return [i for i in range(n) if i not in dropped]


def pruned_config(hf_config, target: PruneTarget, layers: list[int]):
    """A copy of `hf_config` with the target's sizes and only the kept `layers`."""
    new = copy.deepcopy(hf_config)
    for name in ("hidden_size", "intermediate_size", "num_attention_heads", "mamba_num_heads", "mamba_head_dim"):
        if getattr(target, name) is not None:
            setattr(new, name, getattr(target, name))
    new.layers_block_type = [hf_config.layers_block_type[i] for i in layers]
    return new


def prune_model(model: nn.Module, importance: Importance, target: PruneTarget) -> nn.Module:
    """A new, smaller `NemotronHForCausalLM` holding the most important slices of `model`'s weights."""
    old = model.config
    check_target(old, target)
    layers = kept_layers(old, importance, target)
    new_cfg = pruned_config(old, target, layers)
    hd_attn = old.head_dim
    hidden = _top(importance.hidden, new_cfg.hidden_size)

    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def take(key: str, **dims: torch.Tensor) -> torch.Tensor:
        t = state[key]
        for d, idx in dims.items():
            t = t.index_select(int(d[1:]), idx)
        return t.contiguous().clone()

    out["model.embeddings.weight"] = take("model.embeddings.weight", d1=hidden)
    out["lm_head.weight"] = take("lm_head.weight", d1=hidden)
    out["model.norm_f.weight"] = take("model.norm_f.weight", d0=hidden)
    for new_i, i in enumerate(layers):
        src, dst = f"model.layers.{i}.", f"model.layers.{new_i}."
        kind = old.layers_block_type[i]
        keys = [k for k in state if k.startswith(src)]
        sliced: dict[str, torch.Tensor] = {"norm.weight": take(src + "norm.weight", d0=hidden)}
        m = src + "mixer."
        if kind == "mlp":
            neurons = _top(importance.mlp[i], new_cfg.intermediate_size)
            sliced["mixer.up_proj.weight"] = take(m + "up_proj.weight", d0=neurons, d1=hidden)
            sliced["mixer.down_proj.weight"] = take(m + "down_proj.weight", d0=hidden, d1=neurons)
        elif kind == "full_attention":
            kv = old.num_key_value_heads
            heads = _top_per_group(importance.attn_heads[i], kv, new_cfg.num_attention_heads // kv)
            q = _expand(heads, torch.arange(hd_attn), hd_attn)
            sliced["mixer.q_proj.weight"] = take(m + "q_proj.weight", d0=q, d1=hidden)
            sliced["mixer.k_proj.weight"] = take(m + "k_proj.weight", d1=hidden)
            sliced["mixer.v_proj.weight"] = take(m + "v_proj.weight", d1=hidden)
            sliced["mixer.o_proj.weight"] = take(m + "o_proj.weight", d0=hidden, d1=q)
        elif kind == "linear_attention":
            sliced.update(_prune_mamba(state, m, old, new_cfg, importance, i, hidden))
        elif kind == "moe":
            sliced.update(_prune_moe(state, m, old, hidden, take))
        unknown = sorted(k[len(src):] for k in keys if k[len(src):] not in sliced)
        if unknown:  # e.g. linear biases (use_bias / mlp_bias), which no NemotronH release has
            raise SpecError(f"prune: layer {i} ({kind}) has tensors the surgery does not handle: {unknown}")
        out.update({dst + k: v for k, v in sliced.items()})

    with torch.device("meta"):
        new_model = NemotronHForCausalLM(new_cfg)
    missing = sorted(set(new_model.state_dict()) ^ set(out))
    if missing:
        raise RuntimeError(f"prune: pruned state does not match the pruned config's tensors: {missing[:5]}")
    new_model.load_state_dict(out, assign=True, strict=True)
    new_model.to(next(model.parameters()).dtype)
    return new_model.eval()


def _prune_mamba(state, m: str, old, new, importance: Importance, i: int, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
    G, N = old.n_groups, old.ssm_state_size
    mh, hd = old.mamba_num_heads, old.mamba_head_dim
    inner = mh * hd
    heads = _top_per_group(importance.mamba_heads[i], G, new.mamba_num_heads // G)
    dims = _top(importance.mamba_dims[i], new.mamba_head_dim)
    x = _expand(heads, dims, hd)  # kept channels of the inner width
    bc = torch.arange(2 * G * N)
    rows = torch.cat([x, inner + x, 2 * inner + bc, 2 * inner + 2 * G * N + heads])  # [z | x | B,C | dt]
    conv = torch.cat([x, inner + bc])  # conv1d runs over [x | B,C]

    def sel(key: str, *dims_idx: tuple[int, torch.Tensor]) -> torch.Tensor:
        t = state[m + key]
        for d, idx in dims_idx:
            t = t.index_select(d, idx)
        return t.contiguous().clone()

    out = {
        "mixer.in_proj.weight": sel("in_proj.weight", (0, rows), (1, hidden)),
        "mixer.conv1d.weight": sel("conv1d.weight", (0, conv)),
        "mixer.dt_bias": sel("dt_bias", (0, heads)),
        "mixer.A_log": sel("A_log", (0, heads)),
        "mixer.D": sel("D", (0, heads)),
        "mixer.norm.weight": sel("norm.weight", (0, x)),
        "mixer.out_proj.weight": sel("out_proj.weight", (0, hidden), (1, x)),
    }
    if m + "conv1d.bias" in state:
        out["mixer.conv1d.bias"] = sel("conv1d.bias", (0, conv))
    if m + "in_proj.bias" in state:
        out["mixer.in_proj.bias"] = sel("in_proj.bias", (0, rows))
    if m + "out_proj.bias" in state:
        out["mixer.out_proj.bias"] = sel("out_proj.bias", (0, hidden))
    return out


def _prune_moe(state, m: str, old, hidden: torch.Tensor, take) -> dict[str, torch.Tensor]:
    """MoE layers keep every expert; only the residual channels they read and write shrink."""
    out = {
        "mixer.gate.weight": take(m + "gate.weight", d1=hidden),
        "mixer.gate.e_score_correction_bias": take(m + "gate.e_score_correction_bias"),
        "mixer.shared_experts.up_proj.weight": take(m + "shared_experts.up_proj.weight", d1=hidden),
        "mixer.shared_experts.down_proj.weight": take(m + "shared_experts.down_proj.weight", d0=hidden),
    }
    if old.moe_latent_size:  # experts work in the latent width; the latent projections meet the stream
        out["mixer.fc1_latent_proj.weight"] = take(m + "fc1_latent_proj.weight", d1=hidden)
        out["mixer.fc2_latent_proj.weight"] = take(m + "fc2_latent_proj.weight", d0=hidden)
        out["mixer.experts.up_proj"] = take(m + "experts.up_proj")
        out["mixer.experts.down_proj"] = take(m + "experts.down_proj")
    else:  # experts.up_proj [E, I, H], experts.down_proj [E, H, I]
        out["mixer.experts.up_proj"] = take(m + "experts.up_proj", d2=hidden)
        out["mixer.experts.down_proj"] = take(m + "experts.down_proj", d1=hidden)
    return out
