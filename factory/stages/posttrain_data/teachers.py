"""Teachers: who writes candidate solutions. The procedural solver, or any model behind the generator interface
(an in-process transformers model, or an OpenAI-compatible server: vLLM, NIM, `transformers serve`).

    teacher = make_teacher(config, inputs)              # or ModelTeacher(generator, params, config.tir, counts)
    attempts = teacher.solve(prompts, "on", sample=0)   # one per prompt: an Attempt, or the reason there is none

A model teacher is asked with the reasoning switch as its system turn (`detailed thinking on|off`). On math
prompts with tool-integrated reasoning (OpenMathReasoning), the prompt offers Python; generation stops at the
first complete ```python block, the block runs in the sandbox (`factory.verify.sandbox`), its output comes
back as an ```output block in a user turn, and the teacher continues, up to `tir.max_rounds` blocks. The
solution recorded is the whole trajectory as one assistant turn: text, code, output, text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from factory.artifacts import Checkpoint
from factory.chat.records import PROCEDURAL_TEACHER, Prompt, Reasoning, system_prompt
from factory.errors import SpecError
from factory.generate import GenerationParams, Generator
from factory.stages.posttrain_data.config import Config, ToolIntegratedReasoning
from factory.stages.posttrain_data.solver import solution, solve
from factory.stages.posttrain_data.templates import render
from factory.verify.sandbox import Verdict, run_many

OUTPUT_FENCE = "```output"
_FIRST_CODE = re.compile(r"```(?:python|py)\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Attempt:
    """One candidate solution: the user turn as the teacher saw it, its reply, and the code blocks it ran."""

    user: str
    reply: str
    tir_rounds: int = 0


class Teacher(Protocol):
    name: str

    def solve(self, prompts: Sequence[Prompt], reasoning: Reasoning, sample: int) -> list[Attempt | str]:
        """One Attempt per prompt, or a string saying why there is none (counted as a drop reason)."""
        ...


class ProceduralTeacher:
    """The procedural solver as a teacher: traces for the reasoning-gym tasks it knows (`solver.SOLVERS`)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or PROCEDURAL_TEACHER

    def solve(self, prompts: Sequence[Prompt], reasoning: Reasoning, sample: int) -> list[Attempt | str]:
        out: list[Attempt | str] = []
        for prompt in prompts:
            metadata = prompt.meta.get("metadata")
            if metadata is None:
                out.append("no_solver")  # not a procedural item: nothing to compute a trace from
                continue
            try:
                trace = solve(prompt.task, metadata)
            except (ValueError, ArithmeticError, KeyError, SyntaxError, TypeError):
                out.append("solver_failed")  # e.g. a degenerate item such as "0 = 0"
                continue
            out.append("no_solver" if trace is None else Attempt(prompt.question, solution(trace, reasoning)))
        return out


def program_output(verdict: Verdict, chars: int) -> str:
    """What the teacher is shown after its code ran: stdout, the error's last line, or the limit it hit."""
    text = verdict.stdout
    if verdict.limit is not None:
        text += f"\n[stopped: {verdict.limit} limit]"
    elif verdict.exit_code != 0:
        lines = verdict.stderr.strip().splitlines()
        text += "\n" + (lines[-1] if lines else f"[exit code {verdict.exit_code}]")
    text = text.strip("\n")
    return text if len(text) <= chars else text[:chars] + "\n[output cut]"


class ModelTeacher:
    """A model behind the generator interface, with tool-integrated reasoning on math prompts."""

    def __init__(self, generator: Generator, params: GenerationParams, tir: ToolIntegratedReasoning,
                 counts: Counter | None = None, name: str | None = None):
        self.generator = generator
        self.params = params
        self.tir = tir
        self.counts = counts if counts is not None else Counter()
        self.name = name or generator.model_id

    def solve(self, prompts: Sequence[Prompt], reasoning: Reasoning, sample: int) -> list[Attempt | str]:
        params = self.params.model_copy(update={"seed": self.params.seed + 7919 * sample})
        tir_params = params.model_copy(update={"stop": (*params.stop, OUTPUT_FENCE)})
        uses_tir = [self.tir.enabled and p.verifier == "math" for p in prompts]
        users = [p.question + (render("tir") if tir else "") for p, tir in zip(prompts, uses_tir)]
        history: list[list[dict[str, Any]]] = [
            [{"role": "system", "content": system_prompt(reasoning)}, {"role": "user", "content": u}] for u in users]
        texts = [""] * len(prompts)
        rounds = [0] * len(prompts)
        active = list(range(len(prompts)))
        while active:
            outs: dict[int, str] = {}
            for group, group_params in (([i for i in active if uses_tir[i]], tir_params),
                                        ([i for i in active if not uses_tir[i]], params)):
                if group:
                    outs.update(zip(group, self.generator.generate([history[i] for i in group], group_params)))
            runs: list[tuple[int, str, str]] = []  # (prompt index, text up to the block's end, code)
            for i in active:
                match = _FIRST_CODE.search(outs[i]) if uses_tir[i] and rounds[i] < self.tir.max_rounds else None
                if match is None:
                    texts[i] += outs[i]
                else:
                    runs.append((i, outs[i][: match.end()], match.group(1)))
            verdicts = run_many([code for _, _, code in runs], self.tir.sandbox, workers=self.tir.workers) if runs else []
            for (i, segment, _), verdict in zip(runs, verdicts):
                fed = f"{OUTPUT_FENCE}\n{program_output(verdict, self.tir.output_chars)}\n```"
                texts[i] += f"{segment}\n{fed}\n"
                history[i] = [*history[i], {"role": "assistant", "content": segment}, {"role": "user", "content": fed}]
                rounds[i] += 1
                self.counts["tir_code_runs"] += 1
                self.counts["tir_code_errors"] += int(not verdict.passed)
            active = [i for i, _, _ in runs]
        self.counts["tir_solutions"] += sum(1 for r in rounds if r)
        return [Attempt(u, text.strip(), r) for u, text, r in zip(users, texts, rounds)]


def make_teacher(config: Config, inputs: Mapping[str, Any], counts: Counter,
                 generator: Generator | None = None) -> tuple[Teacher, Generator | None]:
    """The teacher `config.teacher` names (a given `generator` wins), and the generator it opened, if any."""
    settings = config.teacher
    if settings.kind == "procedural" and generator is None:
        return ProceduralTeacher(settings.name), None
    opened = None
    if generator is None:
        model_dir, name = None, settings.name
        if settings.kind == "transformers" and settings.model_dir is None:
            if inputs.get("teacher") is None:
                raise SpecError("posttrain_data.teacher.model_dir: set it to a model folder, or give the step a "
                                "'teacher' input (a checkpoint)")

            model_dir = Checkpoint.of(inputs, "teacher").model_dir
            # named by its place in the store (STEP/FINGERPRINT), which the lineage and the model card can follow
            name = name or "/".join(str(inputs["teacher"].uri).rstrip("/").split("/")[-2:])
        generator = opened = settings.open(model_dir, model_id=name)
    return ModelTeacher(generator, config.generation, config.tir, counts, name=settings.name), opened
