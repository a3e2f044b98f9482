"""Groups of sampled completions: G samples per prompt from a policy, as token ids and text (RL rollouts,
on-policy distillation).

Two samplers, one interface (`sample(chats, group_size, max_new_tokens, temperature, generator)` -> groups):

- `LocalSampler`: the in-process policy. A NemotronH policy samples through the factory's decoder
  (`factory.generate.decode`): every prompt x G samples is one stream through continuous batching, each sample
  drawn from its own seed, and those seeds come from one draw of the torch `Generator` passed in, so the same
  generator state gives the same samples (whatever the batching) and the global RNG is untouched. Other
  architectures (imported Llama, Qwen, Mistral) fall back to transformers' `generate`: randomness then comes
  from the global RNG inside `torch.random.fork_rng`, set from the generator and written back; a group shares
  its prompt, so each group is one unpadded batch of G rows.
- `EndpointSampler`: any OpenAI-compatible server (vLLM, NIM, `transformers serve`) through
  `factory.generate.OpenAIGenerator`, one request per sample with a seed drawn from the generator. The server
  returns text: it is re-tokenised for training, and a completion whose tokens reach `max_new_tokens` counts as
  truncated. Keeping the server on the policy being trained is the caller's job (rl's `PolicyPublisher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from factory.generate.decode import decode, supports_fast_decode
from factory.generate.params import GenerationParams
from factory.generate.sampling import Sampling, sequence_seed
from factory.generate.settings import GeneratorSettings
from factory.generate.transformers_model import end_of_turn_ids, render_prompt

__all__ = ["DECODE_SLOTS", "EndpointSampler", "LocalSampler", "Sample"]


class Sample(NamedTuple):
    prompt_ids: list[int]
    completion_ids: list[int]  # with the stop token when the completion ended by itself
    text: str  # the completion as text, special tokens kept (<think>, <tool_call>), stop token left out
    truncated: bool


def _stop_ids(tokenizer) -> list[int]:
    return [i for i in end_of_turn_ids(tokenizer) if i != tokenizer.unk_token_id]


# Sequences the factory's decoder steps at once; the samples do not depend on it (each has its own seed), only the
# speed and the cache's memory do.
DECODE_SLOTS = 64


class LocalSampler:
    """Samples groups from the in-process policy `model` (the factory's decoder on NemotronH, else `generate`)."""

    def __init__(self, model: torch.nn.Module, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.stop_ids = _stop_ids(tokenizer)

    def sample(self, chats: Sequence[list[dict]], group_size: int, max_new_tokens: int, temperature: float,
               generator: torch.Generator) -> list[list[Sample]]:
        return self.sample_ids([render_prompt(self.tokenizer, chat) for chat in chats], group_size, max_new_tokens,
                               temperature, generator)

    def sample_ids(self, prompts: Sequence[list[int]], group_size: int, max_new_tokens: int, temperature: float,
                   generator: torch.Generator) -> list[list[Sample]]:
        """`sample` on prompts given as token ids (a multi-turn episode continues from the exact tokens sampled so
        far, not from its text rendered again). Temperature 0 is greedy."""
        prompts = [list(p) for p in prompts]
        if supports_fast_decode(self.model):
            base = int(torch.randint(0, 2**62, (), generator=generator))  # one draw: the generator moves per call
            seeds = [sequence_seed(base, j, k) for j in range(len(prompts)) for k in range(group_size)]
            rows = decode(self.model, [p for p in prompts for _ in range(group_size)], max_new_tokens,
                          Sampling(temperature=temperature), stop_ids=self.stop_ids, seeds=seeds,
                          slots=min(len(seeds), DECODE_SLOTS))
            completions = [rows[j * group_size:(j + 1) * group_size] for j in range(len(prompts))]
        else:
            completions = [self._generate(prompt, group_size, max_new_tokens, temperature, generator)
                           for prompt in prompts]
        groups = []
        for prompt, rows in zip(prompts, completions):
            group = []
            for row in rows:
                end = next((k for k, t in enumerate(row) if t in self.stop_ids), None)
                completion = row if end is None else row[: end + 1]
                text = self.tokenizer.decode(completion if end is None else completion[:-1], skip_special_tokens=False)
                group.append(Sample(prompt, completion, text, truncated=end is None))
            groups.append(group)
        return groups

    def _generate(self, prompt: list[int], group_size: int, max_new_tokens: int, temperature: float,
                  generator: torch.Generator) -> list[list[int]]:
        """transformers' `generate` for architectures the factory's decoder does not step: G rows of one prompt."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        ids = torch.tensor([prompt] * group_size)  # (G, P): one prompt, no padding
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(generator.get_state())
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                eos_token_id=self.stop_ids, pad_token_id=pad,
                **(dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else
                   dict(do_sample=False)))
            generator.set_state(torch.get_rng_state())
        return out[:, len(prompt):].tolist()  # (G, new)


class EndpointSampler:
    """Samples groups on an OpenAI-compatible server (see the module docstring)."""

    def __init__(self, settings: GeneratorSettings, tokenizer) -> None:
        self.client = settings.open()
        self.tokenizer = tokenizer
        self.stop = _stop_ids(tokenizer)[0]

    def sample(self, chats: Sequence[list[dict]], group_size: int, max_new_tokens: int, temperature: float,
               generator: torch.Generator) -> list[list[Sample]]:
        prompts = [render_prompt(self.tokenizer, chat) for chat in chats]
        columns = []
        for _ in range(group_size):  # one request per sample, each with its own seed
            seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
            params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
            columns.append(self.client.generate(list(chats), params))
        groups = []
        for i, prompt in enumerate(prompts):
            group = []
            for texts in columns:
                ids = self.tokenizer(texts[i], add_special_tokens=False)["input_ids"][:max_new_tokens]
                truncated = len(ids) >= max_new_tokens
                group.append(Sample(prompt, ids if truncated else [*ids, self.stop], texts[i], truncated))
            groups.append(group)
        return groups
