"""A tiny in-process judge that always gives one verdict: a random-weight Llama (tests/builders/architectures.py) made a
bigram model, so greedy decoding after the chat template's assistant header writes exactly `reply` and ends its turn.

    folder = verdict_model(tmp_path / "judge", "Verdict: A")    # a model folder any transformers judge loads

Every layer's output projections (attention o_proj, MLP down_proj) are zeroed, so the last position's hidden state is
its own token's embedding after the final norm, h_t (64,); the unembedding's row of the token that should follow t is
then h_t scaled up, so that token wins the argmax by a wide margin (other rows give ~0 or a random dot product).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.builders.architectures import model_folder_of


def verdict_model(folder: Path, reply: str) -> Path:
    """A model folder whose greedy reply to any chat is `reply` followed by <|im_end|> and the end-of-text token."""
    model_folder_of("llama", folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    header = tok.apply_chat_template([{"role": "user", "content": "?"}], add_generation_prompt=True, tokenize=False)
    start = tok(header, add_special_tokens=False)["input_ids"][-1]  # the assistant header's last token
    chain = [start, *tok(reply, add_special_tokens=False)["input_ids"], tok.convert_tokens_to_ids("<|im_end|>"),
             tok.eos_token_id]
    if len(set(chain)) != len(chain):
        raise ValueError(f"{reply!r}: a token repeats in {chain}; a bigram model cannot write it")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = model.model.norm(model.model.embed_tokens.weight)  # (vocab, 64): h_t of every token
        model.lm_head.weight.zero_()
        for token, following in itertools.pairwise(chain):
            model.lm_head.weight[following] = 10 * hidden[token] / hidden[token].norm()
    model.save_pretrained(folder)
    return Path(folder)
