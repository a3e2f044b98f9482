"""What an rl step costs (`factory plan`): GRPO's rollouts and the shared training estimate on the policy.

Per rollout batch (one every `steps_per_rollout` optimizer steps): `samples_per_rollout` completions sampled from
the policy (prompts x group size) at the length schedule's `max_new_tokens` for that point of the run, one no-grad
pass of the policy over them (log-probabilities and entropy), and one of the reference model when `kl_coef` > 0 or
`log_reference_kl` keeps it. Training: `micro_batch_size` x `grad_accum` completions per step. Every completion is
counted at its prompt (`PROMPT_TOKENS`, an estimate) plus its full length limit, an upper bound; dynamic sampling
may sample up to `max_sampling_rounds` times the first round, which is what is counted.
"""

from __future__ import annotations

import math
from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import PROMPT_TOKENS, forward_flops, generation_flops, trainer_cost, weight_bytes


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    policy = plan.model_of(step)
    rollout = cfg.rollout
    samples = cfg.samples_per_rollout
    lengths = [rollout.max_new_tokens(i * cfg.steps_per_rollout / cfg.steps)
               for i in range(math.ceil(cfg.steps / cfg.steps_per_rollout))]
    longest = PROMPT_TOKENS + max(lengths)
    generation = sum(generation_flops(policy, samples, PROMPT_TOKENS, n) for n in lengths)
    scored = sum(forward_flops(policy, samples * (PROMPT_TOKENS + n), PROMPT_TOKENS + n) for n in lengths)
    extra = {"rollout logprobs": scored}
    memory = {}
    notes = [f"completions counted at a {PROMPT_TOKENS}-token prompt (an estimate) plus their length limit"]
    if rollout.generator.kind == "openai":
        notes.append("rollouts sampled on the server: their FLOPs are the server's")
    else:  # the policy being trained samples them
        extra["generation"] = generation
    if cfg.kl_coef > 0 or cfg.log_reference_kl:
        extra["reference"] = scored
        memory["reference"] = weight_bytes(policy)
    judged = [e.name for e in cfg.environments or [] if e.judge is not None]
    if judged:  # their share of the samples follows the mixture's weights and curriculum, known only as it runs
        notes.append(f"the judge's verdicts on environments {', '.join(judged)} are not counted")
    if rollout.dynamic_sampling and rollout.max_sampling_rounds > 1:
        notes.append(f"dynamic sampling may sample up to {rollout.max_sampling_rounds}x the generation counted")
    return trainer_cost(plan, step, policy, seq_len=longest, extra_flops=extra, extra_memory=memory, estimated=True,
                        data={"rollouts": len(lengths), "generated": samples * sum(lengths)}, notes=tuple(notes))
