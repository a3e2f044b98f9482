"""Many environments in one run: which environment each group comes from, which task it poses, and which
environments are still in the mixture.

    mixture = Mixture(envs, weights=[2, 1, 1, 1], schedule=[], curriculum=CurriculumConfig(), seed=0)
    owners = mixture.assign(groups=8, fraction=0.3, generator=g)   # one environment index per group
    draws = mixture.next_tasks(k, n=3, reasoning="both")          # [(task index, reasoning mode), ...]
    mixture.record_group(k, rewards); mixture.record_faults(k, outcomes)

- Weights: each environment's `weight`, replaced stage by stage by the weight schedule (`WeightStage`s; an
  environment a stage leaves out keeps its weight). Groups are assigned by one seeded multinomial draw over the
  environments still in the mixture; with one environment left no draw is made (a single-environment run draws
  exactly what rl drew before environments existed).
- Tasks: each environment has its own cursor over a fresh seeded permutation of its training pool per epoch;
  with reasoning "both" the mode alternates draw by draw.
- Curriculum (AceReason's dynamic sampling, per environment): over an environment's latest `window` groups, when at
  least `threshold` of them had equal rewards it is dropped: "saturated" when most of those were all-correct,
  "no_signal" otherwise. Never below `min_environments`.
- Faults: lost samples are counted per environment and reason (`FAULTS`); an environment whose lost share passes
  `error_budget` (after 16 samples) is dropped, as is one that went away. Each drop is one log line.

Its state (cursors, windows, counts, what was dropped and why, each environment's own state) is in
`state_dict()`, which the rollout source checkpoints, so a resumed run continues the same mixture.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import torch

from factory.envs.config import CurriculumConfig, WeightStage
from factory.envs.environment import FAULTS, Environment, Outcome
from factory.logs import get_logger

__all__ = ["Mixture"]

log = get_logger("factory.envs.curriculum")

MIN_SAMPLES_FOR_BUDGET = 16


class Mixture:
    """The environments of one run, their weights, cursors, curriculum and fault counts."""

    def __init__(self, envs: Sequence[Environment], weights: Sequence[float], schedule: Sequence[WeightStage] = (),
                 curriculum: CurriculumConfig | None = None, error_budget: float = 0.1, seed: int = 0) -> None:
        self.envs, self.base_weights = list(envs), [float(w) for w in weights]
        self.schedule, self.curriculum, self.error_budget, self.seed = list(schedule), curriculum, error_budget, seed
        self.names = [e.name for e in self.envs]
        self.cursors = [0] * len(self.envs)
        self.dropped: dict[str, str] = {}  # name -> why
        self.windows: list[deque] = [deque(maxlen=curriculum.window if curriculum else 1) for _ in self.envs]
        self.faults: list[Counter] = [Counter() for _ in self.envs]
        self.samples = [0] * len(self.envs)

    # --- which environment, which task -----------------------------------------------------------------------
    def active(self) -> list[int]:
        return [k for k, name in enumerate(self.names) if name not in self.dropped]

    def weights_at(self, fraction: float) -> list[float]:
        """Each environment's weight at `fraction` of the run (the schedule's stage, else its own)."""
        stage = next((s for s in self.schedule if fraction < s.until_fraction), self.schedule[-1] if self.schedule else None)
        return [stage.weights.get(n, w) if stage else w for n, w in zip(self.names, self.base_weights)]

    def assign(self, groups: int, fraction: float, generator: torch.Generator) -> list[int]:
        """One environment index per group, drawn by weight among the environments still in the mixture."""
        active = self.active()
        if not active:
            raise RuntimeError("every environment has been dropped from the mixture")
        if len(active) == 1:
            return [active[0]] * groups
        weights = self.weights_at(fraction)
        w = torch.tensor([weights[k] for k in active], dtype=torch.float64)
        if float(w.sum()) <= 0:
            raise RuntimeError(f"the environments left ({[self.names[k] for k in active]}) all weigh 0 at this point "
                               "of the weight schedule")
        picks = torch.multinomial(w, groups, replacement=True, generator=generator)
        return sorted(active[int(i)] for i in picks)

    def next_tasks(self, k: int, n: int, reasoning: str) -> list[tuple[int, str]]:
        """The next `n` (task index, reasoning mode) draws of environment `k`."""
        size = self.envs[k].size("train")
        out = []
        for _ in range(n):
            epoch, i = divmod(self.cursors[k], size)
            # environment 0 keeps the permutation rl drew before environments existed
            order = torch.randperm(size, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch + k * 7_919_107))
            mode = reasoning if reasoning != "both" else ("on", "off")[self.cursors[k] % 2]
            out.append((int(order[i]), mode))
            self.cursors[k] += 1
        return out

    # --- what came back ----------------------------------------------------------------------------------------
    def record_faults(self, k: int, outcomes: Sequence[Outcome]) -> None:
        """Count `outcomes`' lost samples; drop the environment once its lost share passes the error budget."""
        self.samples[k] += len(outcomes)
        for o in outcomes:
            if o.fault is not None:
                self.faults[k][o.fault] += 1
        lost = sum(self.faults[k].values())
        if self.samples[k] >= MIN_SAMPLES_FOR_BUDGET and lost > self.error_budget * self.samples[k]:
            example = next((o.detail for o in outcomes if o.fault is not None), "")
            self.drop(k, "error_budget", f"{lost} of {self.samples[k]} samples lost ({dict(self.faults[k])}), over the "
                                         f"error budget {self.error_budget:g}; last: {example}")

    def record_group(self, k: int, rewards: Sequence[float]) -> None:
        """One scored group of environment `k` (its lost samples left out); the curriculum decides on its window."""
        if not rewards:
            return
        window = self.windows[k]
        window.append((len(set(rewards)) == 1, min(rewards) >= 1.0))
        cfg = self.curriculum
        if cfg is None or len(window) < cfg.window or len(self.active()) <= cfg.min_environments or \
                self.names[k] in self.dropped:
            return
        flat = sum(z for z, _ in window)
        if flat >= cfg.threshold * len(window):
            correct = sum(c for _, c in window)
            reason = "saturated" if correct * 2 > flat else "no_signal"
            self.drop(k, reason, f"{flat} of its last {len(window)} groups had equal rewards ({correct} all correct)")

    def drop(self, k: int, reason: str, detail: str = "") -> None:
        """Take environment `k` out of the mixture, with one log line."""
        if self.names[k] in self.dropped:
            return
        self.dropped[self.names[k]] = reason
        log.warning("environment_dropped", environment=self.names[k], reason=reason, detail=detail,
                    left=[self.names[j] for j in self.active()])

    def fault_counts(self, k: int) -> dict[str, int]:
        return {f: self.faults[k][f] for f in FAULTS}

    # --- resumable state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"mixture": json.dumps({
            "cursors": self.cursors, "dropped": self.dropped, "samples": self.samples,
            "faults": [dict(c) for c in self.faults], "windows": [list(w) for w in self.windows],
            "envs": [e.state_dict() for e in self.envs]})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        data = json.loads(state["mixture"])
        self.cursors, self.dropped, self.samples = list(data["cursors"]), dict(data["dropped"]), list(data["samples"])
        self.faults = [Counter(c) for c in data["faults"]]
        for window, saved in zip(self.windows, data["windows"]):
            window.clear()
            window.extend(tuple(x) for x in saved)
        for env, saved in zip(self.envs, data["envs"]):
            env.load_state_dict(saved)
