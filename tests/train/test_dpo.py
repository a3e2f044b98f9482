"""DPO and RPO losses (`factory.train.objectives.dpo`): parity with TRL's DPOTrainer on the same model and batch, and
with NeMo-Aligner's RPO formulas written out independently here."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from factory.model import PRESETS
from factory.model.build import build_model
from factory.train.objectives.dpo import PreferenceObjective, preference_loss, reference_logps, sequence_logps

WORDS = "<pad> </s> what is two plus three five six seven yes no the answer".split()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="no"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>")


def _policy_and_reference():
    torch.manual_seed(0)
    reference = build_model(PRESETS["tiny"](), len(WORDS)).eval()
    policy = copy.deepcopy(reference)
    with torch.no_grad():  # a policy that has moved away from its reference, so the log-ratios are not zero
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return policy.train(), reference


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_equals_trl_dpotrainer_on_the_same_batch(tmp_path, beta):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    policy, reference = _policy_and_reference()
    data = Dataset.from_list([
        {"prompt": "what is two plus three", "chosen": " the answer five", "rejected": " six"},
        {"prompt": "what is three plus three", "chosen": " six", "rejected": " the answer seven yes no"},
        {"prompt": "what is two plus two", "chosen": " yes", "rejected": " no no"},
    ])
    args = DPOConfig(output_dir=str(tmp_path), beta=beta, loss_type=["sigmoid"], report_to=[], use_cpu=True,
                     per_device_train_batch_size=3)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data, processing_class=_tokenizer())
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])  # rows: 3 chosen, then 3 rejected
    trl_loss = float(trainer.compute_loss(trainer.model, batch).detach())
    trl_margin = trainer._metrics["train"]["rewards/margins"][-1]

    ids, mask = batch["input_ids"], batch["completion_mask"].bool()
    ref = torch.tensor(reference_logps(reference, list(ids), list(mask)))
    ours_batch = {"chosen_ids": ids[:3], "rejected_ids": ids[3:], "chosen_mask": mask[:3], "rejected_mask": mask[3:],
                  "ref_chosen_logp": ref[:3], "ref_rejected_logp": ref[3:]}
    objective = PreferenceObjective(policy, loss="dpo", beta=beta)
    out = objective(ours_batch)
    assert out.tokens == 3
    assert float(out.loss_sum) / out.tokens == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)
    assert objective.stats["margin"] / 3 == pytest.approx(trl_margin, rel=1e-4, abs=1e-6)
    assert abs(trl_loss - math.log(2)) > 1e-3  # the policy differs from the reference: not the trivial log 2


def _nemo_aligner_rpo(margin, gt_gap, distance):
    """NeMo-Aligner's `rpo_*` preference losses per pair, written from its formulas with probabilities
    (beta is already in `margin`, gt_reward_scale in `gt_gap`)."""
    policy_p, target_p = torch.sigmoid(margin), torch.sigmoid(gt_gap)
    if distance == "sq":
        return (margin - gt_gap) ** 2
    if distance == "bwd_kl":
        return target_p * torch.log(target_p / policy_p) + (1 - target_p) * torch.log((1 - target_p) / (1 - policy_p))
    return policy_p * torch.log(policy_p / target_p) + (1 - policy_p) * torch.log((1 - policy_p) / (1 - target_p))


@pytest.mark.parametrize("distance", ["sq", "bwd_kl", "fwd_kl"])
def test_rpo_loss_equals_nemo_aligner_formulas(distance):
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (-20 * torch.rand(16, generator=g, dtype=torch.float64) for _ in range(4))
    chosen_reward, rejected_reward = 4 * torch.rand(16, generator=g), 4 * torch.rand(16, generator=g)
    beta, eta = 0.2, 0.7
    ours = preference_loss(pc, pr, rc, rr, loss="rpo", beta=beta, distance=distance, eta=eta,
                           chosen_reward=chosen_reward, rejected_reward=rejected_reward)
    margin = beta * (pc - rc) - beta * (pr - rr)
    expected = _nemo_aligner_rpo(margin, eta * (chosen_reward - rejected_reward).double(), distance)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)
    assert float(ours.min()) >= 0  # a distance
    # at the target margin the loss and its gradient vanish
    target = (eta * (chosen_reward - rejected_reward).double() / beta).requires_grad_(True)
    at_target = preference_loss(target, torch.zeros(16, dtype=torch.float64), torch.zeros(16, dtype=torch.float64),
                                torch.zeros(16, dtype=torch.float64), loss="rpo", beta=beta, distance=distance, eta=eta,
                                chosen_reward=chosen_reward, rejected_reward=rejected_reward)
    at_target.sum().backward()
    assert float(at_target.abs().max()) < 1e-12 and float(target.grad.abs().max()) < 1e-9


def test_dpo_label_smoothing_is_conservative_dpo():
    margin = torch.linspace(-3, 3, 13, dtype=torch.float64)
    zeros = torch.zeros_like(margin)
    eps = 0.2
    ours = preference_loss(margin, zeros, zeros, zeros, loss="dpo", beta=1.0, label_smoothing=eps)
    p = torch.sigmoid(margin)
    torch.testing.assert_close(ours, -(1 - eps) * torch.log(p) - eps * torch.log(1 - p))
    plain = preference_loss(margin, zeros, zeros, zeros, loss="dpo", beta=1.0)
    torch.testing.assert_close(plain, -torch.log(p))


def test_sequence_logps_scores_only_the_masked_completion():
    policy, _ = _policy_and_reference()
    ids = torch.tensor([[2, 3, 4, 5, 6, 7, 1]])
    mask = torch.tensor([[0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        logp = float(sequence_logps(policy, ids, mask))
        padded = float(sequence_logps(policy, torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1),
                                      torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], 1)))
        logits = policy(input_ids=ids).logits.log_softmax(-1)
    assert logp == pytest.approx(float(logits[0, 4, 7] + logits[0, 5, 1]), abs=1e-5)
    assert padded == pytest.approx(logp, abs=1e-5)  # right padding does not change what is scored
