"""The objective turns a batch dict into a loss: causal-LM labels built from the windows, or masked labels
(-100) as SFT gives them; the trainer normalises over the label tokens the objective counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from factory.model import PRESETS, build_model
from factory.train import TrainConfig, Trainer
from factory.train.objectives.causal_lm import CausalLMObjective
from factory.train.objectives.causal_lm import IGNORE_INDEX

from tests.builders import WORD_VOCAB


def tiny_model():
    torch.manual_seed(0)
    return build_model(PRESETS["tiny"](), WORD_VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=1)


def windows(n=2, seq_len=12, seed=1):
    return torch.randint(2, WORD_VOCAB, (n, seq_len + 1), generator=torch.Generator().manual_seed(seed))  # (B, T + 1)


def test_causal_lm_labels_are_the_next_tokens():
    model, ids = tiny_model(), windows()
    objective = CausalLMObjective(model)
    out = objective({"input_ids": ids})
    logits = model(input_ids=ids[:, :-1]).logits  # (B, T, V)
    want = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
    assert out.tokens == objective.label_tokens({"input_ids": ids}) == 2 * 12
    assert out.loss_sum.item() == pytest.approx(want.item(), rel=1e-5)


def test_masked_labels_count_only_the_kept_tokens():
    model, ids = tiny_model(), windows()
    labels = ids.clone()
    labels[:, :7] = IGNORE_INDEX  # the prompt: no loss on predicting tokens 1..6
    labels[1, 10:] = IGNORE_INDEX  # a shorter answer in row 1
    objective = CausalLMObjective(model)
    out = objective({"input_ids": ids, "labels": labels})
    logits = model(input_ids=ids[:, :-1]).logits
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    want = F.cross_entropy(logits[keep], targets[keep], reduction="sum")
    assert out.tokens == objective.label_tokens({"input_ids": ids, "labels": labels}) == (13 - 7) + (10 - 7)
    assert out.loss_sum.item() == pytest.approx(want.item(), rel=1e-5)
    # Masking changes the loss: it is not the unmasked sum.
    assert out.loss_sum.item() < objective({"input_ids": ids}).loss_sum.item()


def test_trainer_takes_dict_samples_and_normalises_by_label_tokens():
    ids = windows(n=4, seq_len=16, seed=3)
    labels = ids.clone()
    labels[:, :9] = IGNORE_INDEX
    samples = [{"input_ids": ids[i], "labels": labels[i]} for i in range(4)]
    config = TrainConfig(seq_len=16, micro_batch_size=2, grad_accum=2, steps=1, warmup_steps=0, decay_fraction=0.0,
                         checkpoint_interval=0, lr=1e-3)
    model = tiny_model()
    reference = CausalLMObjective(tiny_model())  # the same initial weights
    trainer = Trainer(CausalLMObjective(model), samples, config)
    metrics = trainer.train_step()
    # One step sees all four samples (2 micro-batches of 2): 4 rows x (16 - 8) label tokens.
    assert metrics.tokens == 4 * (16 - 8)
    whole = reference({"input_ids": ids, "labels": labels})
    assert metrics.loss == pytest.approx(whole.loss_sum.item() / whole.tokens, rel=1e-5)
