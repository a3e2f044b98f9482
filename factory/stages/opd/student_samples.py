"""The opd trainer's sample source: each optimizer step's completions, sampled by the student being trained.

    source = StudentSamples(prompts, LocalSampler(student, tokenizer), config, pad_id)
    source.sample(position)     # {"input_ids": (L,), "completion_mask": (L,)}: one completion of the current step

Step k's batch (`samples_per_step` completions, `samples_per_prompt` per prompt) is sampled on demand when the trainer
first asks for one of its rows: prompts drawn with replacement from the seeded generator, the reasoning switch of
`config.reasoning` ("both": on and off alternating draw by draw), completions from the rollout machinery rl uses
(`factory.generate.groups`), padded on the right to the batch's longest. The generator and the current batch are the
source's state (`state_dict`), so a run killed in the middle of a batch resumes with the same completions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch

from factory.chat.records import Prompt
from factory.stages.opd.config import Config


class StudentSamples:
    """`sample(position)` -> one training row (layout of `factory.train.objectives.opd`), step by step."""

    def __init__(self, prompts: Sequence[Prompt], sampler: Any, config: Config, pad_id: int) -> None:
        self.prompts, self.sampler, self.config, self.pad_id = list(prompts), sampler, config, pad_id
        self.generator = torch.Generator().manual_seed(config.seed)
        self.index = -1  # the step whose batch `batch` holds
        self.batch: dict[str, torch.Tensor] = {}
        self.stats: dict[str, float] = {}

    def sample(self, position: int) -> dict[str, torch.Tensor]:
        index, row = divmod(position, self.config.samples_per_step)
        if index != self.index:
            self._build(index)
        return {key: value[row] for key, value in self.batch.items()}

    def _build(self, index: int) -> None:
        cfg = self.config
        draws = cfg.samples_per_step // cfg.samples_per_prompt
        picked = torch.randint(len(self.prompts), (draws,), generator=self.generator).tolist()
        modes = [("on" if k % 2 == 0 else "off") if cfg.reasoning == "both" else cfg.reasoning for k in range(draws)]
        chats = [self.prompts[i].chat(mode) for i, mode in zip(picked, modes)]
        groups = self.sampler.sample(chats, cfg.samples_per_prompt, cfg.max_new_tokens, cfg.temperature, self.generator)
        samples = [s for group in groups for s in group]
        width = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
        ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(samples), width))  # (B, L)
        for r, s in enumerate(samples):
            p, c = len(s.prompt_ids), len(s.completion_ids)
            ids[r, : p + c] = torch.tensor([*s.prompt_ids, *s.completion_ids])
            mask[r, p : p + c] = 1.0
        self.index, self.batch = index, {"input_ids": ids, "completion_mask": mask}
        lengths = [len(s.completion_ids) for s in samples]
        self.stats = {"response_length": sum(lengths) / len(lengths),
                      "truncation_rate": sum(s.truncated for s in samples) / len(samples),
                      "prompts": float(len(set(picked)))}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to sample the same completions (tensors and plain values only)."""
        return {"generator": self.generator.get_state(), "index": self.index, "batch": dict(self.batch),
                "stats": json.dumps(self.stats)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.index = int(state["index"])
        self.batch = {key: value.cpu() for key, value in state["batch"].items()}
        self.stats = {k: float(v) if v is not None else math.nan for k, v in json.loads(state["stats"]).items()}
