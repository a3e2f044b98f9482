"""State-dict adapters: an engine's parameter names <-> Hugging Face names (torchtitan's `state_dict_adapter`).

The factory's trainer trains transformers models, whose names already are the Hugging Face names, so its
adapter is `HFAdapter` (the identity). An engine that holds the model under its own names (Megatron-Core's
`decoder.layers.N...`; `factory.engines.megatron.MegatronAdapter`) plugs in with an adapter of its own: the HF export writes `to_hf(state)`, and
starting that engine from a Hugging Face checkpoint loads `from_hf(state)`. Every adapter round-trips:
`from_hf(to_hf(state)) == state`, name for name and tensor for tensor.

    adapter = PrefixAdapter({"embedding.word_embeddings.": "model.embeddings.", "decoder.layers.": "model.layers.",
                             "decoder.final_norm.": "model.norm_f.", "output_layer.": "lm_head."})
    hf_state = adapter.to_hf(engine_state)   # loads into NemotronHForCausalLM
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from factory.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["HFAdapter", "PrefixAdapter", "StateDictAdapter"]


class StateDictAdapter(Protocol):
    """Maps a model's state dict to Hugging Face names and back (same tensors, renamed or reshaped)."""

    def to_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def from_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


class HFAdapter:
    """A transformers model: its names are the Hugging Face names."""

    def to_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(state)

    def from_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(state)


class PrefixAdapter:
    """Renames by name prefix: `prefixes` maps an engine prefix to the Hugging Face prefix that replaces it
    (the longest matching prefix wins). A name no prefix covers is an error, never passed through: a
    silently unmapped tensor would be missing from the other side's checkpoint."""

    def __init__(self, prefixes: Mapping[str, str]) -> None:
        hf = list(prefixes.values())
        if len(set(hf)) != len(hf):
            raise ValueError(f"prefixes: two engine prefixes map to one Hugging Face prefix, so from_hf is ambiguous: {hf}")
        self.prefixes = dict(prefixes)

    def to_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {_rename(name, self.prefixes, "engine"): tensor for name, tensor in state.items()}

    def from_hf(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        reverse = {hf: engine for engine, hf in self.prefixes.items()}
        return {_rename(name, reverse, "Hugging Face"): tensor for name, tensor in state.items()}


def _rename(name: str, prefixes: Mapping[str, str], side: str) -> str:
    matching = [p for p in prefixes if name.startswith(p)]
    if not matching:
        raise InputError(f"state dict: {side} parameter {name!r} matches no prefix of {sorted(prefixes)}; "
                         "add its prefix to the adapter")
    prefix = max(matching, key=len)
    return prefixes[prefix] + name[len(prefix):]
