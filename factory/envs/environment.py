"""Environments: a named thing that gives prompts and scores responses (NeMo-Gym's reset/step shape).

    env = open_environment(EnvironmentConfig(name="arith", procedural="basic_arithmetic"), rewards=RewardConfig())
    episode = env.reset("train", 0)                     # Episode(task_id, messages=[{"role": "user", ...}], state)
    outcome = env.step(episode, "... \\boxed{7}")       # Outcome(reward=1.0, done=True, observation=None)

An episode is one sampled conversation: `reset(split, index)` poses task `index` of the "train" or "heldout" pool
(the same index poses the same task, so G episodes of one index form a GRPO group); `step(episode, response)`
scores an assistant turn. A multi-turn environment answers `done=False` with an `observation` (a tool turn's
text), which the caller appends as a `tool` turn before sampling the next assistant turn; the observation's tokens
take no loss. `step_many` scores a batch (the built-in scorers batch their worker processes and sandboxes).

Built-in environments (`TaskEnvironment`) pose tasks from a source (reasoning-gym generators, task files, user
JSONL, the rl step's data input, generated IFEval-style instructions) and score with the verifiers (math, code in
the sandbox, tool calls, choice), the instruction checks or a judge. With `tools: python` a reply's last fenced
Python block runs in the sandbox and its output comes back as a tool turn, until a reply holds no code or the
last turn is reached; then the reply is scored. A user's environment subclasses `Environment` (built as
`Class(config, **context)`; a `module:` entry of an rl step), or is an HTTP server (`factory.envs.remote`).

`guarded_step` is how a trainer calls an environment it does not trust: each call in its own thread with the
environment's timeout; an exception, a timeout or a malformed outcome costs that sample only, with the reason.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from factory.chat.records import Prompt, read_prompts
from factory.chat.thinking import final_answer
from factory.envs.config import EnvironmentConfig, InstructionSource, ProceduralSource
from factory.envs.instructions import instruction_reward, instruction_tasks
from factory.envs.verifiers import RewardConfig, VerifierRewards
from factory.errors import InputError, SpecError
from factory.logs import get_logger
from factory.tasks import builtin_task_files, builtin_task_path, procedural, read_task_file
from factory.verify import multiple_choice_prompt, open_ended_prompt, run_many

__all__ = ["FAULTS", "Environment", "EnvironmentGone", "Episode", "HeldoutSplit", "Outcome", "Task", "TaskEnvironment",
           "guarded_step", "prompt_key", "prompt_task", "prompts_environment", "unseen_heldout"]

log = get_logger("factory.envs.environment")

Split = Literal["train", "heldout"]
HELDOUT_SEED = 1_000_003  # held-out tasks of a generator: seed + this, never a training seed
HELDOUT_DRAWS = 16  # most candidates a generated held-out pool draws, per task asked for, to find unseen prompts

# Why a sample was lost (counted per environment): the environment raised, took longer than its timeout,
# returned an outcome that is not one (a reward that is not a finite number, done not a bool), or went away.
FAULTS = ("raised", "timeout", "malformed", "unreachable")


class EnvironmentGone(RuntimeError):
    """The environment cannot be reached any more (an HTTP server that went away): drop it from the mixture."""


@dataclass
class Episode:
    """One conversation with an environment: its turns so far (no system turn: the trainer adds the reasoning
    switch) and what the environment keeps about it."""

    task_id: str
    messages: list[dict[str, Any]]
    state: Any = None
    turns: int = 0  # assistant turns scored so far


@dataclass(frozen=True)
class Outcome:
    """What a step gives back: the reward once `done`, else the observation that comes next; `fault` names why the
    sample was lost (one of FAULTS) when it was."""

    reward: float | None = None
    done: bool = True
    observation: str | None = None
    fault: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Task:
    """A task a built-in environment poses: the user turn, how it is scored and its reference."""

    id: str
    question: str
    verifier: str  # math, code, tool, choice, instructions
    answer: Any
    messages: list[dict[str, Any]] = field(default_factory=list)  # when not one user turn


class Environment:
    """The interface every environment implements (a user's environment subclasses it)."""

    def __init__(self, config: EnvironmentConfig, **context: Any) -> None:
        self.config = config
        self.name = config.name

    def keeps_switch_format(self, episode: Episode) -> bool:
        """Whether the rl step's reasoning-switch rule applies to this episode's replies (not to Tool-N1's own
        format, which a tool task's reply follows)."""
        return True

    def size(self, split: Split) -> int:
        raise NotImplementedError

    def reset(self, split: Split, index: int) -> Episode:
        raise NotImplementedError

    def step(self, episode: Episode, response: str) -> Outcome:
        raise NotImplementedError

    def step_many(self, episodes: Sequence[Episode], responses: Sequence[str]) -> list[Outcome]:
        return [self.step(e, r) for e, r in zip(episodes, responses)]

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue identically (plain values); most environments keep nothing."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


# --- task sources -----------------------------------------------------------------------------------------------

def _split_items(items: list, heldout: int, where: str) -> tuple[list, list]:
    """A file's items split into (train, held-out candidates): a seeded shuffle, the first `heldout` held out (a
    candidate whose prompt is also a training item's is then removed: `unseen_heldout`)."""
    if heldout >= len(items):
        raise InputError(f"{where}: {len(items)} items, not more than the {heldout} held out; lower heldout")
    order = list(range(len(items)))
    random.Random(0).shuffle(order)
    return [items[i] for i in order[heldout:]], [items[i] for i in order[:heldout]]


def prompt_key(task: Task) -> str:
    """What makes two tasks the same question to a policy: its user turns' text, whitespace collapsed, case folded."""
    text = "\n".join(str(m.get("content", "")) for m in task.messages if m.get("role") == "user") \
        if task.messages else task.question
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class HeldoutSplit:
    """How an environment's held-out pool was kept apart from its training pool: `requested` tasks asked for,
    `posed` kept out of `drawn` candidates, of which `in_training` posed a training prompt and `repeated` a prompt
    already held out (both removed). `posed < requested`: the task space holds no more unseen prompts."""

    requested: int
    posed: int
    drawn: int
    in_training: int
    repeated: int

    @property
    def short(self) -> bool:
        return self.posed < self.requested


def unseen_heldout(train: Sequence[Task], candidates: Sequence[Task], n: int) -> tuple[list[Task], HeldoutSplit]:
    """The first `n` candidates, in order, whose prompt (`prompt_key`) is neither a training prompt nor one already
    kept: a held-out accuracy then measures questions the policy never trained on, each once."""
    training = {prompt_key(t) for t in train}
    kept: list[Task] = []
    keys: set[str] = set()
    in_training = repeated = drawn = 0
    for task in candidates:
        if len(kept) == n:
            break
        drawn += 1
        key = prompt_key(task)
        if key in training:
            in_training += 1
        elif key in keys:
            repeated += 1
        else:
            keys.add(key)
            kept.append(task)
    return kept, HeldoutSplit(n, len(kept), drawn, in_training, repeated)


def _generated_heldout(train: list[Task], make: Callable[[int], list[Task]], n: int) -> tuple[list[Task], HeldoutSplit]:
    """`n` unseen held-out tasks from a generator (`make(size)`: its first `size` tasks from the held-out seed; a
    larger size extends the same sequence), drawing more candidates while removed ones leave the pool short, up to
    `HELDOUT_DRAWS` times `n`: a task space smaller than that gives fewer, and says so."""
    if n == 0:
        return [], HeldoutSplit(0, 0, 0, 0, 0)
    size = n
    while True:
        held, split = unseen_heldout(train, make(size), n)
        if not split.short or size >= HELDOUT_DRAWS * n:
            return held, split
        size = min(HELDOUT_DRAWS * n, 2 * size + 64)


def _item_task(item: Any) -> Task:
    """A task file's item as a task of the verifier its type takes."""
    kind = item.type
    if kind == "math":
        return Task(item.id, item.problem, "math", item.answer)
    if kind == "code":
        return Task(item.id, f"Complete this Python function and give the whole function in a ```python block:\n\n"
                             f"```python\n{item.prompt}```", "code", f"{item.tests}\ncheck({item.entry_point})\n")
    if kind == "multiple_choice":
        return Task(item.id, multiple_choice_prompt(item.question, item.options), "choice",
                    {"gold": item.answer, "options": list(item.options)})
    if kind == "short_answer":
        return Task(item.id, open_ended_prompt(item.question), "choice", {"gold": item.answer, "options": []})
    if kind == "tool_call":
        import json
        return Task(item.id, f"{item.prompt}\n\nTools: {json.dumps(item.tools)}", "tool",
                    [c.model_dump() for c in item.calls])
    raise InputError(f"task item {item.id}: a {kind} item has no verifier an environment scores with")


def prompt_task(prompt: Prompt) -> Task:
    """A conversations artifact's prompt record as a task (its user turns, verifier and reference)."""
    turns = [m.model_dump(exclude_none=True) for m in prompt.messages if m.role not in ("system", "assistant")]
    return Task(prompt.id, prompt.question, prompt.verifier, prompt.answer, messages=turns)


def source_tasks(config: EnvironmentConfig, data: Any = None) -> tuple[list[Task], list[Task], HeldoutSplit]:
    """(train, heldout, how the held-out pool was kept apart) of a built-in environment's source: the held-out pool
    never poses a training prompt. `data`: the rl step's conversations artifact."""
    n = config.heldout
    if config.procedural is not None:
        src = config.procedural if isinstance(config.procedural, ProceduralSource) else \
            ProceduralSource(generator=config.procedural)

        def tasks(size: int, seed: int) -> list[Task]:
            return [Task(i.id, i.problem, "math", i.answer) for i in procedural(src.generator, size, seed, src.params)]
        train = tasks(src.size, src.seed)
        return (train, *_generated_heldout(train, lambda size: tasks(size, src.seed + HELDOUT_SEED), n))
    if config.instructions is not None:
        src = config.instructions if isinstance(config.instructions, InstructionSource) else InstructionSource()

        def make(size: int, seed: int) -> list[Task]:
            return [Task(i, text, "instructions", cons) for i, text, cons in instruction_tasks(size, seed, src.constraints)]
        train = make(src.size, src.seed)
        return (train, *_generated_heldout(train, lambda size: make(size, src.seed + HELDOUT_SEED), n))
    if config.task_file is not None:
        path = builtin_task_path(config.task_file) if config.task_file in builtin_task_files() else Path(config.task_file)
        if not path.is_file():
            raise InputError(f"environment {config.name!r}: task file {config.task_file!r} is neither a built-in one "
                             f"({builtin_task_files()}) nor a file")
        items = [_item_task(i) for i in read_task_file(path).items]
        train, candidates = _split_items(items, n, f"environment {config.name!r}: {path}")
        return (train, *unseen_heldout(train, candidates, n))
    if config.jsonl is not None:
        items = [prompt_task(p) for p in read_prompts(config.jsonl)]
        train, candidates = _split_items(items, n, f"environment {config.name!r}: {config.jsonl}")
        return (train, *unseen_heldout(train, candidates, n))
    if config.data is not None:
        if data is None:
            raise SpecError(f"environment {config.name!r}: data {config.data!r} reads the step's data input")
        train = [prompt_task(p) for p in data.prompts() if config.data in ("all", p.verifier)]
        candidates = [prompt_task(p) for p in data.heldout() if config.data in ("all", p.verifier)]
        if not train:
            raise InputError(f"environment {config.name!r}: {data.path}/prompts.jsonl holds no {config.data!r} prompt; "
                             f"it holds {sorted({p.verifier for p in data.prompts()})}")
        # heldout.jsonl against prompts.jsonl: a held-out record that is also a training prompt is removed and counted
        return (train, *unseen_heldout(train, candidates, n))
    raise SpecError(f"environment {config.name!r}: a {config.source} environment has no task source of its own")


# --- built-in environments --------------------------------------------------------------------------------------

_CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


class TaskEnvironment(Environment):
    """Tasks from a source, scored by a verifier, the instruction checks or a judge; optional python tool turns."""

    def __init__(self, config: EnvironmentConfig, *, rewards: RewardConfig | None = None, data: Any = None,
                 verifiers: VerifierRewards | None = None, tasks: tuple[list[Task], list[Task]] | None = None,
                 **context: Any) -> None:
        super().__init__(config)
        self.reward_config = rewards or RewardConfig()
        if tasks is not None:  # given pools are held to the same rule: no held-out prompt is a training prompt
            train, held, split = (tasks[0], *unseen_heldout(tasks[0], tasks[1], len(tasks[1])))
        else:
            train, held, split = source_tasks(config, data)
        self.pools: dict[str, list[Task]] = {"train": train, "heldout": held}
        self.heldout_split: HeldoutSplit = split
        if not self.pools["train"]:
            raise InputError(f"environment {config.name!r}: no training tasks")
        if split.in_training or split.repeated or split.short:
            event = log.warning if split.short else log.info
            event("heldout_short" if split.short else "heldout_overlap_removed", environment=config.name,
                  requested=split.requested, posed=split.posed, drawn=split.drawn, in_training=split.in_training,
                  repeated=split.repeated,
                  detail=f"its task space gives {split.posed} held-out prompts unseen in training, not "
                         f"{split.requested}: lower heldout or widen the source" if split.short else
                         "held-out candidates that pose a training prompt (or repeat one) were removed")
        self.verifiers = verifiers
        self._owns_verifiers = verifiers is None
        self.judge = None
        if config.scorer == "judge":
            from factory.envs.genrm import open_judge  # the judge loads a model or a client: only when asked
            self.judge = open_judge(config.judge)

    def keeps_switch_format(self, episode: Episode) -> bool:
        return episode.state.verifier != "tool"

    def size(self, split: Split) -> int:
        return len(self.pools[split])

    def reset(self, split: Split, index: int) -> Episode:
        task = self.pools[split][index]
        messages = [dict(m) for m in task.messages] or [{"role": "user", "content": task.question}]
        return Episode(task.id, messages, state=task)

    def step(self, episode: Episode, response: str) -> Outcome:
        return self.step_many([episode], [response])[0]

    def step_many(self, episodes: Sequence[Episode], responses: Sequence[str]) -> list[Outcome]:
        out: list[Outcome | None] = [None] * len(episodes)
        scored = []
        if self.config.tools == "python":
            runs = []
            for i, (e, r) in enumerate(zip(episodes, responses)):
                e.turns += 1
                blocks = _CODE_BLOCK.findall(final_answer(r))
                if blocks and e.turns < self.config.limits.max_turns and "\\boxed" not in final_answer(r):
                    runs.append((i, blocks[-1]))
                else:
                    scored.append(i)
            verdicts = run_many([code for _, code in runs], self.reward_config.sandbox, self.reward_config.code_workers)
            for (i, _), v in zip(runs, verdicts):
                text = (v.stdout + v.stderr).strip()[-1000:] or f"(no output; exit status {v.exit_code})"
                out[i] = Outcome(done=False, observation=f"Output:\n{text}")
        else:
            for e in episodes:
                e.turns += 1
            scored = list(range(len(episodes)))
        rewards = self.score([episodes[i].state for i in scored], [responses[i] for i in scored])
        for i, r in zip(scored, rewards):
            out[i] = Outcome(reward=r, done=True) if r is not None else \
                Outcome(done=True, fault="malformed", detail="the judge's verdict was malformed")
        return out  # type: ignore[return-value]

    def score(self, tasks: Sequence[Task], replies: Sequence[str]) -> list[float | None]:
        """One reward per (task, reply); None where a judge's verdict was malformed."""
        if self.judge is not None:
            return self.judge.rewards([t.question for t in tasks], list(replies), [t.answer for t in tasks])
        out: list[float | None] = [0.0] * len(tasks)
        verifier_rows = [i for i, t in enumerate(tasks) if t.verifier != "instructions"]
        for i, t in enumerate(tasks):
            if t.verifier == "instructions":
                out[i] = instruction_reward(replies[i], t.answer)
        if verifier_rows:
            if self.verifiers is None:
                self.verifiers = VerifierRewards(self.reward_config)
            scores = self.verifiers.score([tasks[i] for i in verifier_rows], [replies[i] for i in verifier_rows])
            for i, s in zip(verifier_rows, scores):
                out[i] = s
        return out

    def close(self) -> None:
        if self.verifiers is not None and self._owns_verifiers:
            self.verifiers.__exit__(None, None, None)
            self.verifiers = None
        if self.judge is not None:
            self.judge.close()
            self.judge = None


def prompts_environment(prompts: Sequence[Prompt], verifiers: VerifierRewards | None = None,
                        rewards: RewardConfig | None = None) -> TaskEnvironment:
    """Prompt records (a conversations artifact's prompts.jsonl) as one environment named "data", each scored by the
    verifier it names: what an rl step without `environments` trains on."""
    config = EnvironmentConfig(name="data", data="all", heldout=0)
    return TaskEnvironment(config, rewards=rewards, verifiers=verifiers, tasks=([prompt_task(p) for p in prompts], []))


# --- calling an environment one does not trust ------------------------------------------------------------------

def _checked(outcome: Any) -> Outcome:
    """`outcome` when it is a well-formed Outcome, else one that says why it is malformed."""
    if not isinstance(outcome, Outcome):
        return Outcome(fault="malformed", detail=f"step returned {type(outcome).__name__}, not an Outcome")
    if outcome.fault is not None:
        return outcome
    if not isinstance(outcome.done, bool):
        return Outcome(fault="malformed", detail=f"done is {outcome.done!r}, not a bool")
    if outcome.done:
        r = outcome.reward
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
            return Outcome(fault="malformed", detail=f"reward {r!r} is not a finite number")
        return Outcome(reward=float(r), done=True)
    if not isinstance(outcome.observation, str):
        return Outcome(fault="malformed", detail="an unfinished episode needs a text observation")
    return outcome


def _call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> tuple[Any, str | None, str]:
    """(result, fault, detail): `fn` in a daemon thread (a hung environment cannot hold the process at exit)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except EnvironmentGone as e:
            box["gone"] = e
        except Exception as e:  # noqa: BLE001 (a user's environment may raise anything: it costs the sample, not the run)
            box["error"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, "timeout", f"no answer within {timeout_s:g} s"
    if "gone" in box:
        raise box["gone"]
    if "error" in box:
        return None, "raised", box["error"]
    return box["result"], None, ""


def guarded_step(env: Environment, episodes: Sequence[Episode], responses: Sequence[str],
                 trusted: bool = False) -> list[Outcome]:
    """Outcomes of `env.step` on each (episode, response); a fault costs that sample only. A trusted (built-in)
    environment is stepped as one batch under one timeout that scales with it; a user's one episode at a time.
    `EnvironmentGone` passes through: the caller drops the environment."""
    timeout = env.config.limits.timeout_s
    if trusted:
        result, fault, detail = _call_with_timeout(lambda: env.step_many(episodes, responses), timeout * len(episodes))
        if fault is not None:
            return [Outcome(fault=fault, detail=detail) for _ in episodes]
        if not isinstance(result, list) or len(result) != len(episodes):
            return [Outcome(fault="malformed", detail="step_many returned the wrong number of outcomes") for _ in episodes]
        return [_checked(o) for o in result]
    out = []
    for episode, response in zip(episodes, responses):
        result, fault, detail = _call_with_timeout(lambda e=episode, r=response: env.step(e, r), timeout)
        out.append(Outcome(fault=fault, detail=detail) if fault is not None else _checked(result))
    return out
