"""RL rollouts: G sampled completions per prompt, scored by the verifiers, turned into GRPO training samples.

The samplers (`factory.generate.groups`: the in-process policy, or an OpenAI-compatible server) draw G completions
per prompt. With an endpoint, before each rollout the `PolicyPublisher` writes the current policy as a
transformers folder and POSTs `{"model_dir": ..., "step": ...}` to the configured reload URL, so the server
samples the policy being trained (the reload hook; vLLM's and NIM's own weight-update routes sit behind such a
URL on a cluster).

`RolloutBatches` is the trainer's sample source (`sample(position)`), one rollout batch per
`steps_per_rollout` optimizer steps. Building a rollout batch:

1. draw prompts in a seeded order (a fresh permutation per epoch); sample G completions each at the current
   temperature and the length schedule's `max_new_tokens`;
2. score them (`factory.stages.rl.rewards`; with `switch_format`, a reply that breaks the reasoning switch
   scores 0, so RL keeps the switch SFT taught); dynamic sampling (DAPO) drops groups whose rewards are all equal
   (all right or all wrong: zero advantage, no signal) and samples more prompts until the batch is full, at
   most `max_sampling_rounds` rounds (then zero-variance groups fill it, and the count says so);
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
(generator, prompt cursor, temperature, the current rollout batch) is in `state_dict()`, which the trainer
checkpoints, so a resumed run draws the same rollouts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch

from factory.chat.records import Prompt
from factory.errors import ServiceError
from factory.generate.groups import Sample
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
    reward: float  # mean reward of every sampled completion (dropped groups included)
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

    def metrics(self) -> dict[str, float]:
        return {"reward": self.reward, "accuracy": self.accuracy, "zero_variance_fraction": self.zero_variance_fraction,
                "truncation_rate": self.truncation_rate, "response_length": self.response_length,
                "entropy": self.entropy, "temperature": self.temperature, "max_new_tokens": float(self.max_new_tokens),
                "kl": self.kl, "groups_filled": float(self.groups_filled)}


class RolloutBatches:
    """The trainer's sample source for GRPO: `sample(position)` returns one training sample (a dict of
    tensors, layout of `factory.train.objectives.grpo`); a rollout batch of `samples_per_rollout` is built on demand."""

    def __init__(self, prompts: Sequence[Prompt], policy: torch.nn.Module, sampler: Any, rewards: Any,
                 config: RolloutConfig, samples_per_rollout: int, steps_per_rollout: int, total_steps: int,
                 seed: int, pad_id: int, reference: torch.nn.Module | None = None, old_logprobs: bool = False,
                 publisher: PolicyPublisher | None = None, forward_batch: int = 8) -> None:
        if samples_per_rollout % config.group_size:
            raise ValueError(f"{samples_per_rollout} samples per rollout do not split into groups of {config.group_size}")
        self.prompts, self.policy, self.sampler, self.rewards, self.config = list(prompts), policy, sampler, rewards, config
        self.samples_per_rollout, self.steps_per_rollout, self.total_steps = samples_per_rollout, steps_per_rollout, total_steps
        self.seed, self.pad_id, self.reference, self.old_logprobs = seed, pad_id, reference, old_logprobs
        self.publisher, self.forward_batch = publisher, forward_batch

        self.generator = torch.Generator().manual_seed(seed)
        self.cursor = 0  # prompts drawn so far, over all epochs
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

    def _next_prompts(self, n: int) -> list[tuple[int, str]]:
        """The next `n` (prompt index, reasoning mode) draws: a fresh seeded permutation per epoch; with
        reasoning "both" the mode alternates draw by draw, so every prompt meets both modes over epochs."""
        out = []
        for _ in range(n):
            epoch, k = divmod(self.cursor, len(self.prompts))
            order = torch.randperm(len(self.prompts), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
            mode = self.config.reasoning if self.config.reasoning != "both" else ("on", "off")[self.cursor % 2]
            out.append((int(order[k]), mode))
            self.cursor += 1
        return out

    def _build(self, index: int) -> None:
        cfg, G = self.config, self.config.group_size
        fraction = index * self.steps_per_rollout / self.total_steps
        max_new = cfg.max_new_tokens(fraction)
        temperature = self.temperature
        if self.publisher is not None:
            self.publisher.publish(self.policy, index * self.steps_per_rollout)
        kept: list[tuple[int, list[Sample], list[float]]] = []
        flat: list[tuple[int, list[Sample], list[float]]] = []
        dropped: list[tuple[int, list[Sample], list[float]]] = []
        correct: list[float] = []
        for _ in range(cfg.max_sampling_rounds if cfg.dynamic_sampling else 1):
            wanted = self.groups_per_rollout - len(kept)
            if wanted == 0:
                break
            drawn = self._next_prompts(wanted)
            groups = self.sampler.sample([self.prompts[i].chat(mode) for i, mode in drawn], G, max_new, temperature,
                                         self.generator)
            scores = self.rewards.score([self.prompts[i] for i, _ in drawn for _ in range(G)],
                                        [s.text for group in groups for s in group])
            correct += scores  # the verifier's verdicts, before the switch-format rule
            if cfg.switch_format:
                for j, ((i, mode), group) in enumerate(zip(drawn, groups)):
                    if self.prompts[i].verifier == "tool":
                        continue
                    for k, sample in enumerate(group):
                        if sample.text.lstrip().startswith("<think>") != (mode == "on"):
                            scores[j * G + k] = 0.0
            for j, ((i, _), group) in enumerate(zip(drawn, groups)):
                rewards = scores[j * G:(j + 1) * G]
                entry = (i, group, rewards)
                flat.append(entry)
                if cfg.dynamic_sampling and len(set(rewards)) == 1:
                    dropped.append(entry)
                else:
                    kept.append(entry)
        filled = max(0, self.groups_per_rollout - len(kept))
        kept += dropped[:filled]

        samples = [s for _, group, _ in kept for s in group]
        rewards = torch.tensor([r for _, _, rs in kept for r in rs], dtype=torch.float32)
        advantages = group_advantages(rewards, G, scale=cfg.scale_advantages)
        length = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
        ids = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(samples), length)
        for r, s in enumerate(samples):
            p, c = len(s.prompt_ids), len(s.completion_ids)
            ids[r, : p + c] = torch.tensor(s.prompt_ids + s.completion_ids)
            if not (cfg.filter_overlong and s.truncated):
                mask[r, p : p + c] = 1
        completion = torch.zeros(len(samples), length)  # every completion token, filtered or not (entropy)
        for r, s in enumerate(samples):
            completion[r, len(s.prompt_ids) : len(s.prompt_ids) + len(s.completion_ids)] = 1
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
        order = torch.randperm(len(samples), generator=self.generator)  # minibatches mix groups
        self.batch = {key: value[order] for key, value in batch.items()}
        self.index = index

        all_samples = [s for _, group, _ in flat for s in group]
        all_rewards = [r for _, _, rs in flat for r in rs]
        digest = hashlib.sha256(json.dumps([[s.prompt_ids, s.completion_ids] for s in samples]).encode()).hexdigest()
        self.stats = RolloutStats(
            rollout=index, reward=sum(all_rewards) / len(all_rewards),
            accuracy=sum(c >= 1.0 for c in correct) / len(correct),
            zero_variance_fraction=sum(len(set(rs)) == 1 for _, _, rs in flat) / len(flat),
            truncation_rate=sum(s.truncated for s in all_samples) / len(all_samples),
            response_length=sum(len(s.completion_ids) for s in all_samples) / len(all_samples),
            entropy=mean_entropy, temperature=temperature, max_new_tokens=max_new, kl=kl, groups_sampled=len(flat),
            groups_filled=filled, digest=digest)
        self.temperature = next_temperature(temperature, mean_entropy, cfg)
        log.info("rollout", **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.stats.__dict__.items()
                               if k != "digest"})

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
        return {"generator": self.generator.get_state(), "cursor": self.cursor, "temperature": self.temperature,
                "index": self.index, "batch": dict(self.batch),
                "stats": None if self.stats is None else json.dumps(self.stats.__dict__)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.cursor, self.temperature, self.index = int(state["cursor"]), float(state["temperature"]), int(state["index"])
        self.batch = {key: value.cpu() for key, value in state["batch"].items()}
        self.stats = None if state["stats"] is None else RolloutStats(**json.loads(state["stats"]))
