"""The GRPO loss equals TRL's on the same batch and log-probabilities (issue 14, item 6).

TRL's loss lives in `GRPOTrainer._compute_loss`, a method that first runs the model to get per-token
log-probabilities. The test calls that very method, unbound, on a stand-in for the trainer that carries only
the settings the loss reads and hands back our log-probabilities instead of running a model: everything
from the log-probabilities on (ratio, clip, k3 KL, DAPO token aggregation) is TRL's own code.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from factory.train.objectives.grpo import GRPOObjective, clipped_surrogate_sum, group_advantages, k3_kl, token_logprobs

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="trl (test extra) compares the GRPO loss")


def trl_loss(logprobs, old_logprobs, advantages, mask, eps_low, eps_high, beta=0.0, ref_logprobs=None):
    """TRL's GRPO loss (loss_type "dapo", token-level importance sampling) on the given log-probabilities."""

    class Accelerator:
        num_processes = 1
        sync_gradients = True

        @staticmethod
        def gather(x):
            return x

        @staticmethod
        def reduce(x, reduction="sum"):
            return x

    trainer = SimpleNamespace(
        loss_type="dapo", epsilon_low=eps_low, epsilon_high=eps_high, beta=beta, importance_sampling_level="token",
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1, accelerator=Accelerator(),
        model=SimpleNamespace(training=True), _metrics={"train": defaultdict(list)},
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        _get_per_token_logps_and_entropies=lambda *a, **k: (logprobs, torch.zeros_like(logprobs), None),
    )
    B, T = logprobs.shape
    inputs = {"prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "num_items_in_batch": mask.sum()}
    if old_logprobs is not None:
        inputs["old_per_token_logps"] = old_logprobs
    if ref_logprobs is not None:
        inputs["ref_per_token_logps"] = ref_logprobs
    return trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)


def batch(seed=0, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + torch.randn(B, T, generator=g) * 0.4  # ratios from ~0.3 to ~3: both clip bounds bind
    ref = logp + torch.randn(B, T, generator=g) * 0.2
    mask = (torch.rand(B, T, generator=g) > 0.25).long()
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0][:B])
    return logp, old, ref, mask, group_advantages(rewards, group_size=3)


@pytest.mark.parametrize("eps_low,eps_high,beta", [(0.2, 0.28, 0.0), (0.2, 0.2, 0.0), (0.1, 0.3, 0.04)])
def test_loss_and_gradient_equal_trls(eps_low, eps_high, beta):
    logp, old, ref, mask, adv = batch()
    ours_lp = logp.clone().requires_grad_(True)
    terms = clipped_surrogate_sum(ours_lp, old, adv, mask, eps_low, eps_high, ref if beta else None, beta)
    ours = terms.loss_sum / terms.tokens  # the trainer divides by the step's completion tokens
    ours.backward()
    theirs_lp = logp.clone().requires_grad_(True)
    theirs = trl_loss(theirs_lp, old, adv, mask, eps_low, eps_high, beta, ref if beta else None)
    theirs.backward()
    assert terms.clipped > 0  # the clip is exercised, not only the linear part
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours_lp.grad, theirs_lp.grad, rtol=1e-6, atol=1e-8)


def test_on_policy_loss_equals_trls_without_old_logprobs():
    """Strictly on-policy, TRL uses the detached current log-probabilities; so do we (ratio exactly 1)."""
    logp, _, _, mask, adv = batch(seed=1)
    ours_lp = logp.clone().requires_grad_(True)
    terms = clipped_surrogate_sum(ours_lp, ours_lp.detach(), adv, mask, 0.2, 0.28)
    (terms.loss_sum / terms.tokens).backward()
    theirs_lp = logp.clone().requires_grad_(True)
    theirs = trl_loss(theirs_lp, None, adv, mask, 0.2, 0.28)
    theirs.backward()
    torch.testing.assert_close(terms.loss_sum / terms.tokens, theirs)
    torch.testing.assert_close(ours_lp.grad, theirs_lp.grad)
    # the policy gradient: -A / N on every masked token, and the loss value is -mean_token(A)
    want = -(adv.unsqueeze(1) * mask) / mask.sum()
    torch.testing.assert_close(ours_lp.grad, want.float())
    assert terms.clipped == 0


def test_group_advantages_equal_trls_normalisation():
    """TRL: (r - group mean) / (nanstd(group) + 1e-4), nanstd being the unbiased std."""
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.25, 1.0])
    grouped = rewards.view(-1, 4)
    want = (grouped - grouped.mean(1, keepdim=True)) / (nanstd(grouped, dim=1).unsqueeze(1) + 1e-4)
    torch.testing.assert_close(group_advantages(rewards, 4), want.flatten())
    assert group_advantages(rewards, 4)[4:8].abs().max() == 0  # an all-right group carries no signal
    torch.testing.assert_close(group_advantages(rewards, 4, scale=False), (grouped - grouped.mean(1, keepdim=True)).flatten())
    with pytest.raises(ValueError, match="groups of 5"):
        group_advantages(rewards, 5)


def test_k3_is_nonnegative_and_zero_at_the_reference():
    lp = torch.linspace(-4, 0, 50)
    assert k3_kl(lp, lp).abs().max() == 0
    assert (k3_kl(lp, lp.flip(0)) >= 0).all()


def test_objective_on_a_model_matches_the_reference_formula():
    """GRPOObjective on a real tiny NemotronH: its loss equals the formula on log-softmax(logits / T)."""
    from factory.model.build import build_model
    from factory.model.presets import tiny

    torch.manual_seed(0)
    model = build_model(tiny(), 50)
    ids = torch.randint(0, 50, (4, 12))
    mask = torch.zeros(4, 12)
    mask[:, 5:] = 1
    mask[1, 9:] = 0  # a shorter completion, right-padded
    temperature = torch.tensor([0.7, 0.7, 1.0, 1.0])
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    objective = GRPOObjective(model, eps_low=0.2, eps_high=0.28)
    out = objective({"input_ids": ids, "completion_mask": mask, "advantages": adv, "temperature": temperature})
    assert out.tokens == objective.label_tokens({"completion_mask": mask}) == int(mask.sum())
    with torch.no_grad():
        logits = model(input_ids=ids[:, :-1]).logits / temperature.view(-1, 1, 1)
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    want = -(adv.unsqueeze(1) * mask[:, 1:]).sum()  # ratio 1 on-policy: -sum A over completion tokens
    torch.testing.assert_close(out.loss_sum.detach(), want)
    got_lp, _ = token_logprobs(model, ids, temperature)
    torch.testing.assert_close(got_lp[:, 1:].detach(), lp)
    stats = objective.pop_stats()
    assert stats["tokens"] == mask.sum() and stats["entropy_sum"] > 0 and objective.stats == {}
