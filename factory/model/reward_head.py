"""A reward model as a regression head on a causal LM (SteerLM / HelpSteer, as Nemotron-4 340B's reward model):
the final hidden state of the last token of `prompt + response` is mapped by one linear layer to attribute
scores (HelpSteer's helpfulness, correctness, coherence, complexity, verbosity, each 0-4).

    rm = RewardModel(backbone, ATTRIBUTES)                     # backbone: a transformers *ForCausalLM
    (trained with `factory.train.objectives.reward_regression.RewardRegressionObjective`; the training shell's
    export writes the folder below, the head's two files beside the backbone)
    rm = load_reward_model(folder); scores = rm.score(ids_list)  # (N, A)

Saved layout (loads with stock transformers plus safetensors):

    config.json, model.safetensors, tokenizer files   the backbone, a plain `save_pretrained` folder
    reward_head.safetensors                           {"weight": (A, H), "bias": (A,)} float32
    reward_head.json                                  {"attributes": [...], "hidden_size": H, "pooling": "last_token"}

so `AutoModelForCausalLM.from_pretrained(folder, output_hidden_states=True)` gives the hidden states and
`hidden_states[-1][:, last] @ weight.T + bias` the scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from factory.errors import InputError
from factory.model.checkpoints import load_model

ATTRIBUTES: tuple[str, ...] = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
HEAD_WEIGHTS, HEAD_CONFIG = "reward_head.safetensors", "reward_head.json"


class RewardModel(nn.Module):
    """`backbone` (a causal LM) with a linear head on the last token's final hidden state."""

    def __init__(self, backbone: nn.Module, attributes: Sequence[str] = ATTRIBUTES) -> None:
        super().__init__()
        self.backbone = backbone
        self.attributes = tuple(attributes)
        self.head = nn.Linear(backbone.config.hidden_size, len(self.attributes))
        # The scores come from the final hidden state, never from the LM head: an untied LM head is frozen, so it
        # takes no gradient and no optimizer state (a resumed run restores exactly what the optimizer holds).
        lm_head, embeddings = backbone.get_output_embeddings(), backbone.get_input_embeddings()
        if lm_head is not None and lm_head.weight is not embeddings.weight:
            lm_head.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """(B, A) attribute scores of right-padded sequences (B, T) with `length` (B,) real tokens each."""
        hidden = self.backbone(input_ids=input_ids, output_hidden_states=True, use_cache=False).hidden_states[-1]  # (B, T, H)
        last = hidden[torch.arange(hidden.shape[0]), length - 1]  # (B, H)
        return self.head(last.float())

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> torch.Tensor:
        """(N, A) scores of token sequences, in eval mode."""
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(sequences), batch_size):
            chunk = [torch.as_tensor(list(s), dtype=torch.long) for s in sequences[start : start + batch_size]]
            width = max(int(t.shape[0]) for t in chunk)
            ids = torch.stack([F.pad(t, (0, width - t.shape[0])) for t in chunk])
            out.append(self(ids, torch.tensor([t.shape[0] for t in chunk])))
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros((0, len(self.attributes)))


def encode_exchange(tokenizer, prompt: Sequence[dict] | str, response: str) -> list[int]:
    """Token ids of a prompt (chat messages, or a string as one user turn) and its response, as the reward model
    reads them: through the tokenizer's chat template when it has one, else as plain text."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    messages = [*messages, {"role": "assistant", "content": response}]
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    text = "\n\n".join(m["content"] for m in messages)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def load_reward_model(folder: Path) -> RewardModel:
    """A `RewardModel` from a folder the reward_model stage wrote, in fp32 and eval mode."""
    folder = Path(folder)
    for part in (HEAD_WEIGHTS, HEAD_CONFIG, "config.json"):
        if not (folder / part).is_file():
            raise InputError(f"{folder / part}: missing; a reward model folder holds the backbone (config.json, "
                             f"weights) and {HEAD_WEIGHTS} + {HEAD_CONFIG} (the reward_model stage writes them)")
    meta = json.loads((folder / HEAD_CONFIG).read_text())
    model = RewardModel(load_model(folder), meta["attributes"])
    head = load_file(folder / HEAD_WEIGHTS)
    model.head.load_state_dict(head)
    return model.eval()
