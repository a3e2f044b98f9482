"""RL rollouts: G sampled completions per prompt, scored by the verifiers, turned into GRPO training samples.

The samplers (`factory.generate.groups`: the in-process policy, or an OpenAI-compatible server) draw G completions
per prompt. With an endpoint, before each rollout the `PolicyPublisher` writes the current policy as a
transformers folder and POSTs `{"model_dir": ..., "step": ...}` to the configured reload URL, so the server
samples the policy being trained (the reload hook; vLLM's and NIM's own weight-update routes sit behind such a
URL on a cluster).

`RolloutBatches` is the trainer's sample source (`sample(position)`), one rollout batch per
`steps_per_rollout` optimizer steps. Building a rollout batch:

1. assign each group to an environment (`factory.envs.Mixture`: by weight and schedule among those the curriculum
   and the error budget kept; the data input's prompts alone are one environment) and draw its tasks in a seeded
   order (a fresh permutation per epoch and environment); sample G completions each at the current temperature and
   the length schedule's `max_new_tokens` (or the environment's own, if smaller);
2. score them: the environment steps each episode (`factory.envs.guarded_step`); a multi-turn environment answers
   with an observation, whose tokens are appended (loss mask 0) before the next assistant turn is sampled from the
   exact tokens so far. A fault (raised, timeout, malformed reward) loses that sample only: it takes no loss and
   no part in its group's statistics; an environment that went away is dropped. With `switch_format`, a reply that
   breaks the reasoning switch scores 0, so RL keeps the switch SFT taught. Dynamic sampling (DAPO) drops groups
   whose rewards are all equal (all right or all wrong: zero advantage, no signal) and samples more until the
   batch is full, at most `max_sampling_rounds` rounds (then zero-variance groups fill it, and the count says so);
3. advantages normalised within each group (`factory.train.objectives.grpo.group_advantages`); truncated completions
   keep their reward in the group statistics but take no loss (overlong filtering);
4. one no-grad pass gives the rollout policy's log-probabilities (the `old_logprobs` of off-policy steps), the
   reference model's (k3 KL), and the entropy of the tempered distribution on the completion tokens;
5. temperature control (AceReason 1.1): the next rollout's temperature moves toward keeping that entropy at
   `target_entropy`: T <- clip(T * exp(rate * e), min, max) with e = (target - H) / target clipped to
   [-1, 1], so one rollout moves T by at most a factor exp(rate). Too little entropy (the policy
   collapsing) heats sampling up; too much cools it down. A proportional controller on log T: simple, and
   bounded, so one odd batch cannot swing sampling.

Its settings (`RolloutConfig`) are in the stage's config, which loading a spec imports. All of its state
(generator, temperature, the current rollout batch, the mixture's cursors, curriculum windows, fault counts and
dropped environments, each environment's own state) is in `state_dict()`, which the trainer checkpoints, so a
resumed run draws the same rollouts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from factory.chat.records import system_prompt
from factory.envs import EnvironmentGone, Mixture, Outcome, TaskEnvironment, guarded_step
from factory.errors import InputError, ServiceError
from factory.generate.transformers_model import render_prompt
from factory.logs import get_logger
from factory.model.checkpoints import save_model
from factory.stages.rl.config import RolloutConfig
from factory.train.objectives.grpo import group_advantages, k3_kl, token_logprobs

__all__ = ["PolicyPublisher", "RolloutBatches", "RolloutStats", "next_temperature"]

log = get_logger("factory.stages.rl.rollout")


def next_temperature(temperature: float, entropy: float, config: RolloutConfig) -> float:
    """The controller step: move T so the tempered entropy approaches the target (see the module docstring)."""
    if config.target_entropy is None or not math.isfinite(entropy):
        return temperature
    error = min(1.0, max(-1.0, (config.target_entropy - entropy) / config.target_entropy))
    low, high = config.temperature_range
    return float(min(high, max(low, temperature * math.exp(config.temperature_rate * error))))


class PolicyPublisher:
    """Writes the policy as a transformers folder and asks the rollout server to reload it (the reload hook)."""

    def __init__(self, folder: Path, tokenizer_from: Path, reload_url: str | None, timeout_s: float = 120.0) -> None:
        self.folder, self.tokenizer_from, self.reload_url, self.timeout_s = Path(folder), Path(tokenizer_from), reload_url, timeout_s
        self.published: list[int] = []

    def publish(self, model: torch.nn.Module, step: int) -> None:
        save_model(model, self.folder, tokenizer_from=self.tokenizer_from)  # atomic: a rename into place
        self.published.append(step)
        if self.reload_url is None:
            return
        try:
            response = httpx.post(self.reload_url, json={"model_dir": str(self.folder), "step": step}, timeout=self.timeout_s)
        except httpx.HTTPError as e:
            raise ServiceError(f"{self.reload_url}: policy reload failed ({type(e).__name__}: {e}); check that the "
                               "rollout server is up and rollout.reload_url is right") from None
        if response.status_code >= 300:
            raise ServiceError(f"{self.reload_url}: policy reload refused (HTTP {response.status_code}: "
                               f"{response.text[:200]}); the server must load the folder it is sent")
        log.info("policy_published", folder=str(self.folder), step=step, reload_url=self.reload_url)


@dataclass
class RolloutStats:
    """What one rollout batch looked like (logged per step)."""

    rollout: int
    reward: float  # mean reward of every sampled completion (dropped groups included; lost samples left out)
    accuracy: float  # share the verifier accepts (before the switch-format rule)
    zero_variance_fraction: float
    truncation_rate: float
    response_length: float
    entropy: float
    temperature: float
    max_new_tokens: int
    kl: float
    groups_sampled: int
    groups_filled: int  # zero-variance groups used to fill a batch dynamic sampling could not
    digest: str  # sha256 of the batch's token ids: equal digests, equal rollouts
    lost: int = 0  # samples an environment fault cost (raised, timeout, malformed, unreachable)
    # per environment: reward, pass_rate, response_length, entropy, groups, lost, weight (0 once dropped)
    environments: dict[str, dict[str, float]] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        out = {"reward": self.reward, "accuracy": self.accuracy, "zero_variance_fraction": self.zero_variance_fraction,
               "truncation_rate": self.truncation_rate, "response_length": self.response_length,
               "entropy": self.entropy, "temperature": self.temperature, "max_new_tokens": float(self.max_new_tokens),
               "kl": self.kl, "groups_filled": float(self.groups_filled), "lost": float(self.lost)}
        for name, figures in self.environments.items():
            out.update({f"env/{name}/{key}": value for key, value in figures.items()})
        return out


@dataclass
class Trajectory:
    """One sampled episode as the trainer sees it: the prompt, then every assistant turn with the observations
    between them; `loss_mask` is 1 on the policy's tokens and 0 on the observations' (they take no loss)."""

    env: int
    prompt_ids: list[int]
    completion_ids: list[int]
    loss_mask: list[int]
    text: str  # the first assistant turn (the reasoning-switch rule reads it)
    truncated: bool
    switch_format: bool = True  # whether the reasoning-switch rule applies (not to Tool-N1's format)
    reward: float | None = None  # None: an environment fault lost the sample
    correct: float | None = None  # the environment's reward before the switch-format rule


def observation_ids(tokenizer, stop_ids: Sequence[int], chat: list[dict], reply: str, observation: str) -> list[int]:
    """The tokens between an assistant turn's stop token and the next assistant turn: the rest of the turn's end,
    the tool turn holding `observation`, the next assistant header (what the chat template writes there)."""
    turn = [*chat, {"role": "assistant", "content": reply}]
    base = list(tokenizer.apply_chat_template(turn, tokenize=True, return_dict=True)["input_ids"])
    full = render_prompt(tokenizer, [*turn, {"role": "tool", "content": observation}])
    ends = [i for i, t in enumerate(base) if t in stop_ids]
    if full[: len(base)] != base or not ends:
        raise InputError("the chat template renders a conversation's earlier turns differently once a tool turn "
                         "follows, so a multi-turn episode's tokens cannot be continued; use chat_template: factory")
    return base[ends[-1] + 1:] + full[len(base):]


class RolloutBatches:
    """The trainer's sample source for GRPO: `sample(position)` returns one training sample (a dict of
    tensors, layout of `factory.train.objectives.grpo`); a rollout batch of `samples_per_rollout` is built on demand
    from the environments of `mixture` (`factory.envs.Mixture`)."""

    def __init__(self, mixture: Mixture, policy: torch.nn.Module, sampler: Any, config: RolloutConfig,
                 samples_per_rollout: int, steps_per_rollout: int, total_steps: int, seed: int, pad_id: int,
                 reference: torch.nn.Module | None = None, old_logprobs: bool = False,
                 publisher: PolicyPublisher | None = None, forward_batch: int = 8) -> None:
        if samples_per_rollout % config.group_size:
            raise ValueError(f"{samples_per_rollout} samples per rollout do not split into groups of {config.group_size}")
        self.mixture, self.policy, self.sampler, self.config = mixture, policy, sampler, config
        self.samples_per_rollout, self.steps_per_rollout, self.total_steps = samples_per_rollout, steps_per_rollout, total_steps
        self.seed, self.pad_id, self.reference, self.old_logprobs = seed, pad_id, reference, old_logprobs
        self.publisher, self.forward_batch = publisher, forward_batch

        self.generator = torch.Generator().manual_seed(seed)
        self.temperature = config.temperature
        self.index = -1  # the rollout batch held in `batch`
        self.batch: dict[str, torch.Tensor] = {}
        self.stats: RolloutStats | None = None

    @property
    def groups_per_rollout(self) -> int:
        return self.samples_per_rollout // self.config.group_size

    # --- the sample source ------------------------------------------------------------------------
    def sample(self, position: int) -> dict[str, torch.Tensor]:
        index, row = divmod(position, self.samples_per_rollout)
        if index != self.index:
            self._build(index)
        return {key: value[row] for key, value in self.batch.items()}

    # --- episodes ---------------------------------------------------------------------------------
    def episodes(self, k: int, split: str, draws: Sequence[tuple[int, str]], group_size: int, max_new: int,
                 temperature: float, generator: torch.Generator) -> list[list[Trajectory]] | None:
        """`group_size` episodes of environment `k` per (task index, reasoning mode) draw, sampled and scored turn by
        turn; None when the environment went away (dropped from the mixture). Only training episodes count towards
        the mixture's fault counts and drops: a held-out evaluation leaves the training's state as it was."""
        env, mixture = self.mixture.envs[k], self.mixture
        training = split == "train"
        limit = env.config.limits
        max_new = min(max_new, limit.max_new_tokens or max_new)
        try:
            episodes = [env.reset(split, i) for i, _ in draws for _ in range(group_size)]
        except EnvironmentGone as e:
            if training:
                mixture.drop(k, "unreachable", str(e))
            return None
        except Exception as e:  # noqa: BLE001 (a user's environment that cannot pose its task loses these samples)
            outcome = Outcome(fault="timeout" if isinstance(e, TimeoutError) else "raised", detail=f"reset: {e}")
            if training:
                mixture.record_faults(k, [outcome] * (len(draws) * group_size))
            return [[Trajectory(k, [], [], [], "", False) for _ in range(group_size)] for _ in draws]
        chats = [[{"role": "system", "content": system_prompt(mode)}, *episodes[j * group_size].messages]
                 for j, (_, mode) in enumerate(draws)]
        groups = self.sampler.sample(chats, group_size, max_new, temperature, generator)
        flat = [s for group in groups for s in group]
        trajectories = [Trajectory(k, s.prompt_ids, list(s.completion_ids), [1] * len(s.completion_ids), s.text,
                                   s.truncated, env.keeps_switch_format(episodes[j])) for j, s in enumerate(flat)]
        history = [[*chats[j // group_size], {"role": "assistant", "content": s.text}] for j, s in enumerate(flat)]
        trusted = isinstance(env, TaskEnvironment)
        try:
            outcomes = guarded_step(env, episodes, [s.text for s in flat], trusted=trusted)
            live = list(range(len(flat)))
            final: list[Outcome | None] = [None] * len(flat)
            for turn in range(1, limit.max_turns + 1):
                going = []
                for j, o in zip(live, outcomes):
                    if o.fault is not None or o.done:
                        final[j] = o
                    elif trajectories[j].truncated or turn == limit.max_turns:
                        final[j] = Outcome(reward=0.0) if trajectories[j].truncated else \
                            Outcome(fault="malformed", detail=f"not done after max_turns {limit.max_turns}")
                    else:
                        going.append((j, o.observation))
                if not going:
                    break
                prompts = []
                for j, observation in going:
                    t = trajectories[j]
                    obs = observation_ids(self.sampler.tokenizer, self.sampler.stop_ids, history[j][:-1],
                                          history[j][-1]["content"], observation)
                    t.completion_ids += obs
                    t.loss_mask += [0] * len(obs)
                    history[j].append({"role": "tool", "content": observation})
                    prompts.append(t.prompt_ids + t.completion_ids)
                more = [g[0] for g in self.sampler.sample_ids(prompts, 1, max_new, temperature, generator)]
                for (j, _), s in zip(going, more):
                    t = trajectories[j]
                    t.completion_ids += s.completion_ids
                    t.loss_mask += [1] * len(s.completion_ids)
                    t.truncated = s.truncated
                    history[j].append({"role": "assistant", "content": s.text})
                live = [j for j, _ in going]
                outcomes = guarded_step(env, [episodes[j] for j in live], [s.text for s in more], trusted=trusted)
        except EnvironmentGone as e:
            if training:
                mixture.drop(k, "unreachable", str(e))
            return None
        if training:
            mixture.record_faults(k, final)  # type: ignore[arg-type]
        for t, o in zip(trajectories, final):
            t.reward = t.correct = None if o is None or o.fault is not None else o.reward
        return [trajectories[j * group_size:(j + 1) * group_size] for j in range(len(draws))]

    def _build(self, index: int) -> None:
        cfg, G, mixture = self.config, self.config.group_size, self.mixture
        fraction = index * self.steps_per_rollout / self.total_steps
        max_new = cfg.max_new_tokens(fraction)
        temperature = self.temperature
        weights = mixture.weights_at(fraction)
        if self.publisher is not None:
            self.publisher.publish(self.policy, index * self.steps_per_rollout)
        kept: list[list[Trajectory]] = []
        flat: list[list[Trajectory]] = []
        dropped: list[list[Trajectory]] = []
        for _ in range(cfg.max_sampling_rounds if cfg.dynamic_sampling else 1):
            wanted = self.groups_per_rollout - len(kept)
            if wanted == 0:
                break
            owners = mixture.assign(wanted, fraction, self.generator)
            for k in dict.fromkeys(owners):
                draws = mixture.next_tasks(k, owners.count(k), cfg.reasoning)
                groups = self.episodes(k, "train", draws, G, max_new, temperature, self.generator)
                if groups is None:
                    continue
                for (_, mode), group in zip(draws, groups):
                    if cfg.switch_format:
                        for t in group:
                            if t.reward is not None and t.switch_format and \
                                    t.text.lstrip().startswith("<think>") != (mode == "on"):
                                t.reward = 0.0
                    rewards = [t.reward for t in group if t.reward is not None]
                    if not rewards:
                        continue  # every sample of the group was lost
                    mixture.record_group(k, rewards)
                    flat.append(group)
                    if cfg.dynamic_sampling and len(set(rewards)) == 1:
                        dropped.append(group)
                    else:
                        kept.append(group)
            if not mixture.active():
                raise ServiceError("every environment of the mixture was dropped: " +
                                   ", ".join(f"{n} ({why})" for n, why in mixture.dropped.items()))
        filled = max(0, self.groups_per_rollout - len(kept))
        kept += dropped[:filled]
        if len(kept) < self.groups_per_rollout:
            raise ServiceError(f"rollout {index}: only {len(kept)} of {self.groups_per_rollout} groups could be "
                               "sampled; the environments lost the rest (see the environment_dropped log lines)")

        samples = [t for group in kept for t in group]
        valid = [[t.reward is not None for t in group] for group in kept]
        means = [sum(t.reward for t in g if t.reward is not None) / sum(v) for g, v in zip(kept, valid)]
        rewards = torch.tensor([t.reward if t.reward is not None else m for g, m in zip(kept, means) for t in g],
                               dtype=torch.float32)
        advantages = group_advantages(rewards, G, scale=cfg.scale_advantages)
        for j, v in enumerate(valid):  # a group with lost samples: advantages within the samples it kept
            if not all(v):
                rows = [j * G + i for i in range(G) if v[i]]
                advantages[j * G:(j + 1) * G] = 0.0
                advantages[rows] = group_advantages(rewards[rows], len(rows), scale=cfg.scale_advantages) \
                    if len(rows) > 1 else 0.0
        length = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
        ids = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(samples), length)
        completion = torch.zeros(len(samples), length)  # every token the policy sampled, filtered or not (entropy)
        for r, s in enumerate(samples):
            p, c = len(s.prompt_ids), len(s.completion_ids)
            ids[r, : p + c] = torch.tensor(s.prompt_ids + s.completion_ids)
            completion[r, p : p + c] = torch.tensor(s.loss_mask, dtype=torch.float32)
            if not (cfg.filter_overlong and s.truncated) and s.reward is not None:
                mask[r, p : p + c] = completion[r, p : p + c]
        temps = torch.full((len(samples),), temperature)
        old, entropy = self._forward(self.policy, ids, temps, with_entropy=True)
        batch = {"input_ids": ids, "completion_mask": mask, "advantages": advantages, "temperature": temps}
        kl = float("nan")
        if self.reference is not None:
            ref, _ = self._forward(self.reference, ids, temps)
            batch["ref_logprobs"] = ref
            kl = float((k3_kl(old, ref) * completion).sum() / completion.sum().clamp(min=1))
        if self.old_logprobs:
            batch["old_logprobs"] = old
        mean_entropy = float((entropy * completion).sum() / completion.sum().clamp(min=1))
        row_entropy = (entropy * completion).sum(dim=1)  # (B,) summed over each row's sampled tokens
        order = torch.randperm(len(samples), generator=self.generator)  # minibatches mix groups
        self.batch = {key: value[order] for key, value in batch.items()}
        self.index = index

        every = [t for group in flat for t in group]
        scored = [t for t in every if t.reward is not None]
        digest = hashlib.sha256(json.dumps([[s.prompt_ids, s.completion_ids] for s in samples]).encode()).hexdigest()
        per_env = {}
        for k, name in enumerate(mixture.names):
            mine = [t for t in scored if t.env == k]
            rows = [r for r, s in enumerate(samples) if s.env == k]
            tokens = float(completion[rows].sum()) if rows else 0.0
            per_env[name] = {
                "reward": _mean([t.reward for t in mine]), "pass_rate": _mean([float(t.correct >= 1.0) for t in mine]),
                "response_length": _mean([float(sum(t.loss_mask)) for t in mine]),
                "entropy": float(row_entropy[rows].sum()) / tokens if tokens else math.nan,
                "groups": float(sum(g[0].env == k for g in flat)),
                "lost": float(sum(mixture.faults[k].values())),
                "weight": 0.0 if name in mixture.dropped else float(weights[k])}
        self.stats = RolloutStats(
            rollout=index, reward=_mean([t.reward for t in scored]),
            accuracy=_mean([float(t.correct >= 1.0) for t in scored]),
            zero_variance_fraction=sum(len({t.reward for t in g if t.reward is not None}) == 1 for g in flat) / len(flat),
            truncation_rate=sum(t.truncated for t in every) / len(every),
            response_length=sum(sum(t.loss_mask) for t in every) / len(every),
            entropy=mean_entropy, temperature=temperature, max_new_tokens=max_new, kl=kl, groups_sampled=len(flat),
            groups_filled=filled, digest=digest, lost=sum(t.reward is None for t in every),
            environments=per_env if len(mixture.envs) > 1 or mixture.names != ["data"] else {})
        self.temperature = next_temperature(temperature, mean_entropy, cfg)
        log.info("rollout", **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.stats.__dict__.items()
                               if k not in ("digest", "environments")})

    def heldout(self, max_new_tokens: int, temperature: float = 0.0) -> dict[str, dict[str, float]]:
        """Per environment with held-out tasks: accuracy (share of rewards >= 1, with its standard error), mean
        reward and count over its held-out pool, one greedy episode each (temperature 0), from a fixed seed."""
        out = {}
        generator = torch.Generator().manual_seed(self.seed + 17)
        saved = [env.state_dict() for env in self.mixture.envs]  # held-out episodes leave the training's state as it was
        for k, env in enumerate(self.mixture.envs):
            n = min(env.config.heldout, env.size("heldout")) if env.name not in self.mixture.dropped else 0
            if n == 0:
                continue
            mode = "on" if self.config.reasoning != "off" else "off"
            groups = self.episodes(k, "heldout", [(i, mode) for i in range(n)], 1, max_new_tokens, temperature, generator)
            if groups is None:
                continue
            rewards = [g[0].reward for g in groups if g[0].reward is not None]
            correct = [float(r >= 1.0) for r in rewards]
            p = _mean(correct)
            out[env.name] = {"accuracy": p, "stderr": math.sqrt(p * (1 - p) / len(correct)) if correct else math.nan,
                             "reward": _mean(rewards), "n": float(len(correct)), "lost": float(n - len(correct))}
        for env, state in zip(self.mixture.envs, saved):
            env.load_state_dict(state)
        return out

    def _forward(self, model: torch.nn.Module, ids: torch.Tensor, temps: torch.Tensor,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) log-probabilities and entropies of `model` on a rollout, `forward_batch` rows at a time."""
        logps, entropies = [], []
        for start in range(0, ids.shape[0], self.forward_batch):
            with torch.no_grad():
                lp, ent = token_logprobs(model, ids[start : start + self.forward_batch],
                                         temps[start : start + self.forward_batch], with_entropy=with_entropy)
            logps.append(lp)
            entropies.append(ent if ent is not None else torch.zeros_like(lp))
        return torch.cat(logps), torch.cat(entropies)

    # --- resumable state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to draw the same rollouts (tensors and plain values only)."""
        return {"generator": self.generator.get_state(), "temperature": self.temperature,
                "index": self.index, "batch": dict(self.batch), **self.mixture.state_dict(),
                "stats": None if self.stats is None else json.dumps(self.stats.__dict__)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.temperature, self.index = float(state["temperature"]), int(state["index"])
        self.mixture.load_state_dict(state)
        self.batch = {key: value.cpu() for key, value in state["batch"].items()}
        self.stats = None if state["stats"] is None else RolloutStats(**json.loads(state["stats"]))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
