"""What a preference step costs (`factory plan`): making the pairs, then the shared training estimate on the policy.

Pairs: the policy samples `samples_per_prompt` completions of every training and held-out prompt (a prompt of
`PROMPT_TOKENS`, an estimate, plus `max_new_tokens`, an upper bound); with `judge: reward_model` the reward model
scores each; a GenRM that is the `judge` input compares samples two at a time (twice with both orders) on that
input's model (a GenRM with its own model or endpoint is not counted here); with `responses_file` nothing is sampled;
the reference log-probabilities of both sequences of every pair are computed once. Training: two sequences (chosen,
rejected) of at most `seq_len` tokens per pair, `micro_batch_size` pairs per pass.
"""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import NotCosted, PlanContext, PlannedModel, StepCost
from factory.cost.workload import PROMPT_TOKENS, forward_flops, generation_flops, trained_tokens, trainer_cost


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    policy = plan.model_of(step)
    data = plan.upstream(step, "data")
    known = data.data if data is not None else {}
    prompts = known.get("prompts")
    if prompts is None:  # no count upstream: as many prompts as the run trains pairs
        prompts = trained_tokens(plan, step, 1) / cfg.pairs_per_prompt
    if cfg.max_prompts is not None:
        prompts = min(prompts, cfg.max_prompts)
    heldout = min(cfg.heldout_prompts, known.get("heldout_prompts", cfg.heldout_prompts))
    sampled = (prompts + heldout) * cfg.samples_per_prompt
    length = PROMPT_TOKENS + cfg.max_new_tokens
    pairs = (prompts + heldout) * cfg.pairs_per_prompt
    # read responses (`responses_file`) are not sampled
    extra = ({"sampling": generation_flops(policy, sampled, PROMPT_TOKENS, cfg.max_new_tokens)}
             if cfg.responses_file is None else {}) | {"reference": forward_flops(policy, 2 * pairs * length, length)}
    if cfg.judge == "reward_model":
        extra["judge"] = forward_flops(plan.model_of(step, "reward_model"), sampled * length, length)
    genrm = _genrm_model(step, plan) if cfg.genrm is not None and cfg.genrm.from_input else None
    if genrm is not None:  # the `judge` input compares samples 0 and 1, 2 and 3, ... (twice with both orders)
        comparisons = (prompts + heldout) * (cfg.samples_per_prompt // 2) * (2 if cfg.genrm.both_orders else 1)
        extra["genrm"] = generation_flops(genrm, comparisons, PROMPT_TOKENS + 2 * cfg.max_new_tokens,
                                          cfg.genrm.max_new_tokens)
    measured = tuple(k for k in ("prompts",) if data is not None and k in data.measured)
    return trainer_cost(plan, step, policy, seq_len=cfg.seq_len, rows=2 * cfg.micro_batch_size, extra_flops=extra,
                        data={"prompts": prompts, "pairs": pairs}, estimated=True, measured=measured,
                        notes=(f"pairs: at most {cfg.pairs_per_prompt} per prompt; trained sequences counted at "
                               + f"seq_len {cfg.seq_len} (an upper bound)",
                               *(["the GenRM's comparisons run on its own model or endpoint: not counted"]
                                 if cfg.judge == "genrm" and genrm is None else [])))


def _genrm_model(step: Any, plan: PlanContext) -> PlannedModel | None:
    """The `judge` input's planned model, None when its shape is not known (an architecture the plan cannot cost)."""
    try:
        return plan.model_of(step, "judge")
    except NotCosted:
        return None
