"""Users' environments (`module: tests.envs.user_envs:Class`): a well-behaved one that asks for a letter, a two-turn
one, and one that misbehaves on purpose (raises, hangs, or returns a malformed reward, by episode)."""

from __future__ import annotations

import time

from factory.envs import Environment, Episode, Outcome

WORDS = ("A", "B", "C", "D")


class SayLetter(Environment):
    """"Say the letter X": reward 1 when the reply's last letter is X (a toy for a tiny letter policy)."""

    def size(self, split):
        return 16 if split == "train" else 8

    def reset(self, split, index):
        letter = WORDS[index % 4] if split == "train" else WORDS[(index + 1) % 4]
        return Episode(f"say-{split}-{index}", [{"role": "user", "content": f"Question {index}: pick a letter."}],
                       state=letter)

    def step(self, episode, response):
        letters = [c for c in response if c in WORDS]
        return Outcome(reward=float(bool(letters) and letters[-1] == episode.state), done=True)


class TwoTurns(SayLetter):
    """The first reply gets an observation back ("Try again: ..."); the second is scored."""

    def step(self, episode, response):
        episode.turns += 1
        if episode.turns == 1:
            return Outcome(done=False, observation=f"Try again: the letter is {episode.state}.")
        return super().step(episode, response)


class Misbehaving(SayLetter):
    """Episodes in the order they are opened, by number % 4: 0 scores normally, 1 raises, 2 hangs past the timeout,
    3 returns a reward that is not one (NaN). A group of 8 therefore keeps 2 samples."""

    opened = 0

    def reset(self, split, index):
        episode = super().reset(split, index)
        episode.state = (episode.state, self.opened % 4)
        self.opened += 1
        return episode

    def step(self, episode, response):
        letter, kind = episode.state
        if kind == 1:
            raise RuntimeError("the environment broke")
        if kind == 2:
            time.sleep(self.config.limits.timeout_s * 3)
        if kind == 3:
            return Outcome(reward=float("nan"), done=True)
        letters = [c for c in response if c in WORDS]
        return Outcome(reward=float(bool(letters) and letters[-1] == letter), done=True)


class NotAnEnvironment:
    pass
