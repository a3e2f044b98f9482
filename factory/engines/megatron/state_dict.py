"""`MegatronAdapter`: Megatron-Core hybrid-model parameter names <-> transformers `NemotronHForCausalLM` names.

Names follow Megatron-Bridge's NemotronH bridge mapping. Per layer `i` of the pattern (HF `model.layers.i.`,
Megatron `decoder.layers.i.`):

    M  norm.weight -> mixer.in_proj.layer_norm_weight (TE fuses the pre-norm into the first linear);
       mixer.{in_proj.weight, conv1d.weight, conv1d.bias, A_log, D, dt_bias, norm.weight, out_proj.weight}
       keep their names (at full width the in_proj rows are [z | x | B | C | dt] on both sides)
    *  norm.weight -> self_attention.linear_qkv.layer_norm_weight; o_proj -> self_attention.linear_proj;
       q_proj, k_proj, v_proj -> one self_attention.linear_qkv.weight, rows grouped per KV group:
       [q heads of group 0 | k_0 | v_0 | q heads of group 1 | k_1 | v_1 | ...], each head `head_dim` rows
    -  norm.weight -> mlp.linear_fc1.layer_norm_weight; up_proj -> mlp.linear_fc1; down_proj -> mlp.linear_fc2
    E  norm.weight -> pre_mlp_layernorm.weight; gate.weight -> mlp.router.weight;
       gate.e_score_correction_bias -> mlp.router.expert_bias; shared_experts.{up,down}_proj ->
       mlp.shared_experts.linear_fc{1,2}; experts.up_proj [E, ffn, hidden] -> mlp.experts.linear_fc1.weight{e}
       (one [ffn, hidden] matrix per expert, TE's grouped GEMM), down_proj likewise -> linear_fc2.weight{e}

plus the embedding, `decoder.final_norm` and `output_layer` (the untied LM head). The tensors are full
(unsharded) ones, as a Megatron distributed checkpoint loads when gathered; tensor-parallel slicing is
Megatron's job. Megatron pads the vocabulary rows of the embedding and the LM head; given
`padded_vocab_size`, `from_hf` appends zero rows and `to_hf` drops them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from factory.errors import InputError
from factory.model.config import ModelConfig

__all__ = ["MegatronAdapter"]

_EMBED = ("embedding.word_embeddings.weight", "model.embeddings.weight")
_HEAD = ("output_layer.weight", "lm_head.weight")
_MAMBA_PARAMS = ("in_proj.weight", "conv1d.weight", "conv1d.bias", "A_log", "D", "dt_bias", "norm.weight", "out_proj.weight")
# Where the layer's pre-norm lives in Megatron: fused into TE's first linear, or a separate norm module.
_NORMS = {
    True: {"M": "mixer.in_proj.layer_norm_weight", "*": "self_attention.linear_qkv.layer_norm_weight",
           "-": "mlp.linear_fc1.layer_norm_weight", "E": "pre_mlp_layernorm.weight"},
    False: {"M": "norm.weight", "*": "input_layernorm.weight", "-": "pre_mlp_layernorm.weight", "E": "pre_mlp_layernorm.weight"},
}


class MegatronAdapter:
    """Renames (and fuses / splits) a Megatron-Core hybrid model's state dict to and from Hugging Face names.

    `to_hf(from_hf(hf)) == hf` and `from_hf(to_hf(megatron)) == megatron` tensor for tensor (the second one
    when Megatron's vocabulary padding rows are zero). A missing or unexpected name is an `InputError`
    naming it: nothing is passed through unmapped.
    """

    def __init__(self, config: ModelConfig, *, fused_norms: bool = True, grouped_experts: bool = True,
                 vocab_size: int | None = None, padded_vocab_size: int | None = None) -> None:
        if (vocab_size is None) != (padded_vocab_size is None):
            raise ValueError("vocab_size and padded_vocab_size go together (both or neither)")
        if vocab_size is not None and padded_vocab_size < vocab_size:
            raise ValueError(f"padded_vocab_size {padded_vocab_size} is below vocab_size {vocab_size}")
        self.config = config
        self.vocab_size, self.padded_vocab_size = vocab_size, padded_vocab_size
        # TE's grouped GEMM holds expert e's matrix as `linear_fc{n}.weight{e}`; megatron-core's SequentialMLP (the
        # local spec) as `local_experts.{e}.linear_fc{n}.weight`
        self._expert = ("decoder.layers.{i}.mlp.experts.linear_fc{n}.weight{e}" if grouped_experts
                        else "decoder.layers.{i}.mlp.experts.local_experts.{e}.linear_fc{n}.weight")
        norms = _NORMS[fused_norms]
        renames = [_EMBED, ("decoder.final_norm.weight", "model.norm_f.weight"), _HEAD]  # (megatron, hf)
        self._attention: list[int] = []
        self._moe: list[int] = []
        for i, kind in enumerate(config.pattern):
            meg, hf = f"decoder.layers.{i}.", f"model.layers.{i}."
            renames.append((meg + norms[kind], hf + "norm.weight"))
            if kind == "M":
                renames += [(f"{meg}mixer.{p}", f"{hf}mixer.{p}") for p in _MAMBA_PARAMS]
            elif kind == "*":
                renames.append((meg + "self_attention.linear_proj.weight", hf + "mixer.o_proj.weight"))
                self._attention.append(i)
            elif kind == "-":
                renames += [(meg + "mlp.linear_fc1.weight", hf + "mixer.up_proj.weight"),
                            (meg + "mlp.linear_fc2.weight", hf + "mixer.down_proj.weight")]
            else:
                renames += [(meg + "mlp.router.weight", hf + "mixer.gate.weight"),
                            (meg + "mlp.router.expert_bias", hf + "mixer.gate.e_score_correction_bias"),
                            (meg + "mlp.shared_experts.linear_fc1.weight", hf + "mixer.shared_experts.up_proj.weight"),
                            (meg + "mlp.shared_experts.linear_fc2.weight", hf + "mixer.shared_experts.down_proj.weight")]
                self._moe.append(i)
        self._renames = renames
        self.megatron_names = frozenset(
            [m for m, _ in renames]
            + [f"decoder.layers.{i}.self_attention.linear_qkv.weight" for i in self._attention]
            + [self._expert.format(i=i, n=n, e=e) for i in self._moe for n in (1, 2)
               for e in range(config.moe_num_experts)]
        )
        self.hf_names = frozenset(
            [h for _, h in renames]
            + [f"model.layers.{i}.mixer.{p}_proj.weight" for i in self._attention for p in "qkv"]
            + [f"model.layers.{i}.mixer.experts.{p}_proj" for i in self._moe for p in ("up", "down")]
        )

    def to_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Megatron names -> Hugging Face names (q/k/v split out, experts stacked, vocabulary padding dropped)."""
        _check_names(state, self.megatron_names, "Megatron")
        out = {hf: state[meg] for meg, hf in self._renames}
        for i in self._attention:
            name = f"decoder.layers.{i}.self_attention.linear_qkv.weight"
            q, k, v = self._split_qkv(name, state[name])
            out.update({f"model.layers.{i}.mixer.q_proj.weight": q, f"model.layers.{i}.mixer.k_proj.weight": k,
                        f"model.layers.{i}.mixer.v_proj.weight": v})
        for i in self._moe:
            for n, proj in ((1, "up"), (2, "down")):
                experts = [state[self._expert.format(i=i, n=n, e=e)] for e in range(self.config.moe_num_experts)]
                out[f"model.layers.{i}.mixer.experts.{proj}_proj"] = torch.stack(experts)
        if self.vocab_size is not None:
            for meg, hf in (_EMBED, _HEAD):
                _check_rows(meg, state[meg], self.padded_vocab_size)
                out[hf] = out[hf][: self.vocab_size]
        return out

    def from_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hugging Face names -> Megatron names (q/k/v fused per KV group, experts unstacked, vocabulary padded)."""
        _check_names(state, self.hf_names, "Hugging Face")
        out = {meg: state[hf] for meg, hf in self._renames}
        for i in self._attention:
            hf = f"model.layers.{i}.mixer."
            out[f"decoder.layers.{i}.self_attention.linear_qkv.weight"] = self._fuse_qkv(
                hf, state[hf + "q_proj.weight"], state[hf + "k_proj.weight"], state[hf + "v_proj.weight"])
        for i in self._moe:
            for n, proj in ((1, "up"), (2, "down")):
                name = f"model.layers.{i}.mixer.experts.{proj}_proj"
                _check_rows(name, state[name], self.config.moe_num_experts)
                for e, weight in enumerate(state[name].unbind(0)):
                    out[self._expert.format(i=i, n=n, e=e)] = weight
        if self.vocab_size is not None:
            for meg, hf in (_EMBED, _HEAD):
                _check_rows(hf, state[hf], self.vocab_size)
                pad = state[hf].new_zeros(self.padded_vocab_size - self.vocab_size, *state[hf].shape[1:])
                out[meg] = torch.cat([state[hf], pad])
        return out

    def _split_qkv(self, name: str, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # qkv: [groups * (heads_per_group + 2) * head_dim, hidden] -> q [heads * head_dim, hidden], k, v [groups * head_dim, hidden]
        c = self.config
        groups, per_group, d = c.num_key_value_heads, c.num_attention_heads // c.num_key_value_heads, c.head_dim
        _check_rows(name, qkv, groups * (per_group + 2) * d)
        blocks = qkv.reshape(groups, (per_group + 2) * d, *qkv.shape[1:])
        q, k, v = blocks.split([per_group * d, d, d], dim=1)
        return tuple(t.reshape(-1, *qkv.shape[1:]).contiguous() for t in (q, k, v))

    def _fuse_qkv(self, prefix: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        c = self.config
        groups, d = c.num_key_value_heads, c.head_dim
        _check_rows(prefix + "q_proj.weight", q, c.num_attention_heads * d)
        _check_rows(prefix + "k_proj.weight", k, groups * d)
        _check_rows(prefix + "v_proj.weight", v, groups * d)
        rest = q.shape[1:]
        grouped = [t.reshape(groups, -1, *rest) for t in (q, k, v)]
        return torch.cat(grouped, dim=1).reshape(-1, *rest)


def _check_names(state: Mapping[str, object], expected: Iterable[str], side: str) -> None:
    expected = set(expected)
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        what = [f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}" if missing else "",
                f"unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}" if extra else ""]
        raise InputError(f"state dict: the {side} parameters do not match the model config's pattern: "
                         f"{'; '.join(w for w in what if w)}")


def _check_rows(name: str, tensor: torch.Tensor, rows: int) -> None:
    if tensor.shape[0] != rows:
        raise InputError(f"state dict: {name} has shape {tuple(tensor.shape)}; the model config needs {rows} rows")
