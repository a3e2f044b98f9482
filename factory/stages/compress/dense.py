"""Minitron pruning of dense transformers as transformers builds them (Llama, Qwen2, Qwen3, Mistral): activation
importance on calibration windows, then width and depth surgery into a smaller model of the same class.

Scores (means over the calibration tokens, Minitron arXiv 2407.14679), in `Importance`'s fields:

    hidden         [H]       |x| of the outputs of every norm that reads the residual stream (input_layernorm,
                             post_attention_layernorm of every layer, the final norm), summed
    mlp[i]         [I]       |x| of the input of layer i's down_proj, act(gate) * up (one score per neuron)
    attn_heads[i]  [nh]      L2 over head_dim of the input of layer i's o_proj (one score per query head)
    block_influence [L]      1 - cos(input, output) of each decoder layer (ShortGPT)
    loss_increase   [L]      LM loss with layer i skipped minus the full model's loss

Surgery keeps the most important

- residual channels: embed_tokens and lm_head columns, every hidden norm's weight, the input columns of q/k/v and
  gate/up, the output rows (and biases) of o_proj and down_proj;
- MLP neurons: gate/up rows (and biases), down_proj columns, the same count in every layer;
- query heads *within each KV group*, the same number per group; every KV head stays (`num_key_value_heads` is
  unchanged, as in the NemotronH path). transformers' GQA maps query head h to KV head h // (heads / kv_heads), so
  every group must keep the same count; pruning query heads evenly keeps each kept head with the keys and values it
  was trained on, where dropping a whole KV group would take out the K/V its importance scores never measured alone
  (scores are per query head). The cost: the KV cache does not shrink with the heads;
- head_dim stays (rotary and Qwen3's per-head q_norm/k_norm work in it), and is written into the config explicitly,
  since these models otherwise derive it from hidden_size / num_attention_heads, which pruning changes;
- layers: the `drop_layers` least important decoder layers by `layer_metric` go (and their `layer_types` entries).

Under a `budget`, `dense_candidates` lists the search space's shapes (residual and MLP widths, layers dropped; heads
stay) with their exact parameter count (the pruned class built on the meta device) and serving memory (weights, and
the KV cache of every layer: `factory.cost` reads NemotronH shapes only), as `factory.stages.compress.search` does.

    imp = measure_dense_importance(model, windows)                 # windows (N, T + 1) token ids
    small = prune_dense(model, imp, PruneTarget(hidden_size=48, intermediate_size=96, num_attention_heads=2))
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from factory.cost import ServingMemory
from factory.cost.memory import format_bytes
from factory.errors import SpecError
from factory.model.checkpoints import lm_loss
from factory.stages.compress.config import DENSE_ARCHITECTURES, Budget, Config, PruneTarget, SearchSpace, check_architecture
from factory.stages.compress.importance import Importance, _Accumulator, lm_loss_without
from factory.stages.compress.search import Candidate, _round, _within, no_fit
from factory.stages.compress.surgery import _expand, _top, _top_per_group, kept_layers


def is_dense(model: nn.Module) -> bool:
    """Whether `model` is one of the dense transformer classes this module prunes."""
    return type(model).__name__ in DENSE_ARCHITECTURES


def head_dim_of(hf_config) -> int:
    """The attention head width as these models read it: `head_dim` when set, else hidden_size / heads."""
    return getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads


def check_dense(config: Config, hf_config, architecture: str, step: str) -> None:
    """Raise `SpecError` (one line naming the step, the field and the architecture) for what the dense path cannot do
    (Mamba sizes, Mamba head fractions in the search) or a target that does not shrink `hf_config` validly. Runs before
    any calibration work."""
    where = f"step {step}: "
    check_architecture(config, architecture, step)  # what the spec's plan refuses already
    if config.budget is not None:
        return
    t = config.target
    assert t is not None
    c, m = hf_config, config.width_multiple_of
    limits = {"hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
              "num_attention_heads": c.num_attention_heads}
    for name, current in limits.items():
        value = getattr(t, name)
        if value is not None and value > current:
            raise SpecError(f"{where}target.{name}: {value} exceeds the {architecture}'s {current}; pruning only shrinks")
    kv, hd = c.num_key_value_heads, head_dim_of(c)
    if t.num_attention_heads is not None and t.num_attention_heads % kv:
        raise SpecError(f"{where}target.num_attention_heads: {t.num_attention_heads} must be a multiple of the {architecture}'s "
                        f"{kv} KV heads (query heads are pruned evenly within each KV group)")
    if m and t.num_attention_heads is not None and t.num_attention_heads * hd % m:
        raise SpecError(f"{where}target.num_attention_heads: {t.num_attention_heads} heads of {hd} make an attention width of "
                        f"{t.num_attention_heads * hd} in the {architecture}, not a multiple of width_multiple_of = {m}")
    if t.drop_layers >= c.num_hidden_layers:
        raise SpecError(f"{where}target.drop_layers: {t.drop_layers} would leave no layer of the {architecture}'s "
                        f"{c.num_hidden_layers}")


def measure_dense_importance(model: nn.Module, windows: torch.Tensor, batch_size: int = 8,
                             layer_loss: bool = True) -> Importance:
    """Run `model` over calibration `windows` (N, T+1) and return its `Importance` (fields as the module docstring says).

    `layer_loss` also measures each layer's LM-loss increase when skipped (one extra pass per layer)."""
    c = model.config
    layers = model.model.layers
    acc = _Accumulator()
    hooks = []

    for i, layer in enumerate(layers):
        hooks += [layer.input_layernorm.register_forward_hook(acc.channels_out("hidden")),
                  layer.post_attention_layernorm.register_forward_hook(acc.channels_out("hidden")),
                  layer.mlp.down_proj.register_forward_pre_hook(acc.channels_in(f"mlp.{i}")),
                  layer.self_attn.o_proj.register_forward_pre_hook(acc.heads_in(f"attn.{i}", c.num_attention_heads)),
                  layer.register_forward_hook(acc.influence(f"influence.{i}"))]
    hooks.append(model.model.norm.register_forward_hook(acc.channels_out("hidden")))
    was_training = model.training
    model.eval()
    try:
        base = lm_loss(model, windows, batch_size)
    finally:
        for h in hooks:
            h.remove()
    n = len(layers)
    imp = Importance(hidden=acc.mean("hidden"), base_loss=base,
                     mlp={i: acc.mean(f"mlp.{i}") for i in range(n)},
                     attn_heads={i: acc.mean(f"attn.{i}") for i in range(n)},
                     block_influence=torch.stack([acc.mean(f"influence.{i}") for i in range(n)]))
    if layer_loss:
        imp.loss_increase = torch.tensor([lm_loss_without(model, windows, i, batch_size) - base for i in range(n)])
    model.train(was_training)
    return imp


@dataclass(frozen=True)
class Kept:
    """What survives pruning, as indices into the unpruned model (ascending): residual channels [H'], and per kept layer
    (keys: old layer indices) its MLP neurons [I'] and query heads [nh']."""

    hidden: torch.Tensor
    layers: list[int]
    neurons: dict[int, torch.Tensor]
    heads: dict[int, torch.Tensor]


def kept_units(hf_config, importance: Importance, target: PruneTarget) -> Kept:
    """The channels, neurons, heads and layers `target` keeps, the most important by `importance`."""
    c = hf_config
    layers = kept_layers(c, importance, target)
    kv = c.num_key_value_heads
    per_group = (target.num_attention_heads or c.num_attention_heads) // kv
    return Kept(hidden=_top(importance.hidden, target.hidden_size or c.hidden_size), layers=layers,
                neurons={i: _top(importance.mlp[i], target.intermediate_size or c.intermediate_size) for i in layers},
                heads={i: _top_per_group(importance.attn_heads[i], kv, per_group) for i in layers})


def pruned_dense_config(hf_config, target: PruneTarget, layers: list[int]):
    """A copy of `hf_config` with the target's sizes, only the kept `layers`, and head_dim explicit."""
    new = copy.deepcopy(hf_config)
    new.head_dim = head_dim_of(hf_config)
    for name in ("hidden_size", "intermediate_size", "num_attention_heads"):
        if getattr(target, name) is not None:
            setattr(new, name, getattr(target, name))
    new.num_hidden_layers = len(layers)
    if getattr(hf_config, "layer_types", None) is not None:  # per-layer attention kind (full / sliding)
        new.layer_types = [hf_config.layer_types[i] for i in layers]
    return new


def prune_dense(model: nn.Module, importance: Importance, target: PruneTarget) -> nn.Module:
    """A new, smaller model of `model`'s class holding the most important slices of its weights."""
    old = model.config
    kept = kept_units(old, importance, target)
    new_cfg = pruned_dense_config(old, target, kept.layers)
    hd = new_cfg.head_dim
    hidden = kept.hidden
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def take(key: str, *dims: tuple[int, torch.Tensor]) -> torch.Tensor:
        t = state[key]
        for d, idx in dims:
            t = t.index_select(d, idx)
        return t.contiguous().clone()

    out["model.embed_tokens.weight"] = take("model.embed_tokens.weight", (1, hidden))
    out["model.norm.weight"] = take("model.norm.weight", (0, hidden))
    if "lm_head.weight" in state:
        out["lm_head.weight"] = take("lm_head.weight", (1, hidden))
    for new_i, i in enumerate(kept.layers):
        src = f"model.layers.{i}."
        q = _expand(kept.heads[i], torch.arange(hd), hd)  # kept rows of q_proj / columns of o_proj
        neurons = kept.neurons[i]
        # tensor name in the layer -> (dim, kept indices) slices; a name absent here is not a tensor the surgery knows
        slices: dict[str, tuple[tuple[int, torch.Tensor], ...]] = {
            "input_layernorm.weight": ((0, hidden),), "post_attention_layernorm.weight": ((0, hidden),),
            "self_attn.q_proj.weight": ((0, q), (1, hidden)), "self_attn.q_proj.bias": ((0, q),),
            "self_attn.k_proj.weight": ((1, hidden),), "self_attn.k_proj.bias": (),
            "self_attn.v_proj.weight": ((1, hidden),), "self_attn.v_proj.bias": (),
            "self_attn.o_proj.weight": ((0, hidden), (1, q)), "self_attn.o_proj.bias": ((0, hidden),),
            "self_attn.q_norm.weight": (), "self_attn.k_norm.weight": (),  # Qwen3: per head_dim
            "mlp.gate_proj.weight": ((0, neurons), (1, hidden)), "mlp.gate_proj.bias": ((0, neurons),),
            "mlp.up_proj.weight": ((0, neurons), (1, hidden)), "mlp.up_proj.bias": ((0, neurons),),
            "mlp.down_proj.weight": ((0, hidden), (1, neurons)), "mlp.down_proj.bias": ((0, hidden),),
        }
        names = [k[len(src):] for k in state if k.startswith(src)]
        unknown = sorted(n for n in names if n not in slices)
        if unknown:
            raise SpecError(f"prune: layer {i} of the {type(model).__name__} has tensors the surgery does not handle: {unknown}")
        out.update({f"model.layers.{new_i}.{n}": take(src + n, *slices[n]) for n in names})

    with torch.device("meta"):
        new_model = type(model)(new_cfg)
    expected = set(new_model.state_dict())
    mismatch = sorted(expected ^ set(out))
    if mismatch:
        raise RuntimeError(f"prune: pruned state does not match the pruned config's tensors: {mismatch[:5]}")
    new_model.load_state_dict(out, assign=True, strict=True)
    if getattr(new_cfg, "tie_word_embeddings", False):
        new_model.tie_weights()
    # non-persistent buffers (rotary inv_freq) are not in a state dict: rebuilt on the CPU from the (unchanged) rope config
    rotary = new_model.model.rotary_emb
    new_model.model.rotary_emb = type(rotary)(config=new_cfg)
    left = [n for n, t in [*new_model.named_parameters(), *new_model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"prune: tensors left unset after surgery: {left[:5]}")
    new_model.to(next(model.parameters()).dtype)
    return new_model.eval()


def dense_candidates(model: nn.Module, importance: Importance, space: SearchSpace, budget: Budget,
                     layer_metric: str = "loss_increase") -> list[Candidate]:
    """Every candidate of `space` (hidden and MLP fractions, layers dropped; query heads kept) with its size, within
    `budget`, largest first. Raises `SpecError` when none fits, naming the smallest candidate's size."""
    c = model.config
    found: dict[PruneTarget, Candidate] = {}
    for fh, fm, drop in itertools.product(space.hidden_fractions, space.mlp_fractions, space.drop_layers):
        if drop >= c.num_hidden_layers:
            continue
        target = PruneTarget(hidden_size=_round(c.hidden_size * fh, space.multiple_of, space.multiple_of),
                             intermediate_size=_round(c.intermediate_size * fm, space.multiple_of, space.multiple_of),
                             drop_layers=drop, layer_metric=layer_metric)  # type: ignore[arg-type]
        shape = pruned_dense_config(c, target, kept_layers(c, importance, target))
        with torch.device("meta"):  # the exact count of the class's own tensors, none allocated
            params = sum(p.numel() for p in type(model)(shape).parameters())
        found[target] = Candidate(target, params, dense_serving_memory(shape, params, budget).terms())
    ranked = sorted(found.values(), key=lambda cand: (cand.params, cand.memory_total), reverse=True)
    fits = [cand for cand in ranked if _within(cand, budget)]
    if not fits:
        raise no_fit(ranked[-1], budget)
    return fits


def dense_serving_memory(hf_config, params: int, budget: Budget) -> ServingMemory:
    """Serving memory of a dense model of `params` parameters at the budget's context and batch: weights in its
    weights format, and K and V of kv_heads x head_dim per token in every layer (no Mamba state)."""
    kv = (hf_config.num_hidden_layers * 2 * hf_config.num_key_value_heads * head_dim_of(hf_config) * budget.context_len
          * budget.batch * format_bytes(budget.kv_cache_format))
    return ServingMemory(weights=round(params * format_bytes(budget.weights_format)), kv_cache=round(kv), mamba_conv=0,
                         mamba_ssm=0)
