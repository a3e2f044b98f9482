"""Build a `NemotronHForCausalLM` from a `ModelConfig` (on CPU, GPU or the meta device)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import NemotronHForCausalLM

from factory.model.config import ModelConfig


def build_model(config: ModelConfig, vocab_size: int, device: str | torch.device = "cpu", **special_token_ids: int | None):
    """A freshly initialised transformers `NemotronHForCausalLM`; `device="meta"` allocates nothing."""
    hf_config = config.to_hf(vocab_size, **special_token_ids)
    with torch.device(device):
        return NemotronHForCausalLM(hf_config)


def count_parameters(model: nn.Module) -> int:
    """Total parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
