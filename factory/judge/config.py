"""What a generative judge is (light: a spec load imports it): the judge model, its prompt file, the verdict's shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from factory.errors import UserError
from factory.generate.settings import GeneratorSettings
from factory.judge.prompt_file import builtin_judge_prompts, read_judge_prompt
from factory.stage import StageConfig

__all__ = ["JudgeConfig", "check_judge_input"]


class JudgeConfig(StageConfig):
    """A generative judge: a model reached through the generator interface that reads a prompt file and answers with a
    verdict in one documented format (`factory.judge.verdicts`); a malformed verdict is counted, never guessed."""

    generator: GeneratorSettings = Field(description="The judge model: kind 'transformers' with model_dir (a model "
                                      "folder) or without it (the step's `judge` input: a checkpoint, e.g. an "
                                      "import_model step), or 'openai' with base_url and model (vLLM, NIM, transformers "
                                      "serve).")
    mode: Literal["score", "pairwise"] = Field(
        "score", description="score: each response judged alone (against a reference answer when the prompt reads "
        "one), correct/incorrect or a grade on `scale`; pairwise: the response against a reference response "
        "(Nemotron 3's GenRM), the verdict naming the better one.")
    prompt: str | None = Field(
        None, description="The judge's prompt file: a built-in name (factory/judge/prompts: correctness, quality, pairwise) "
        "or a YAML path (system, user template); None: pairwise for mode pairwise, quality with a scale, else "
        "correctness.")
    scale: tuple[int, int] | None = Field(
        None, description="score: the grade's range (low, high), reward (grade - low) / (high - low); None: a "
        "correct/incorrect verdict. pairwise: both responses are also graded on it (`Scores: A=N, B=M`).")
    both_orders: bool = Field(
        False, description="pairwise: judge each pair twice, the response shown first then second; when the two "
        "orders disagree the verdict is a tie (position bias cancels).")
    max_new_tokens: int = Field(512, ge=1, description="Most tokens of one judge reply.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature of the judge; 0: greedy.")
    reasoning: Literal["on", "off"] | None = Field(
        None, description="The judge's reasoning switch (its chat template's enable_thinking); the verdict is read "
        "after the think block. None: the template's default.")
    error_budget: float = Field(
        0.0, ge=0.0, le=1.0, description="Largest share of malformed verdicts a step accepts; above it the step fails "
        "with one line naming the reasons.")

    @model_validator(mode="after")
    def _coherent(self) -> JudgeConfig:
        if self.scale is not None and not self.scale[0] < self.scale[1]:
            raise ValueError(f"scale: {list(self.scale)} must be (low, high) with low < high")
        if self.both_orders and self.mode != "pairwise":
            raise ValueError("both_orders swaps the two responses of a pairwise judgement; remove it in mode "
                             "score")
        try:
            read_judge_prompt(self.prompt_name, self.mode)
        except UserError as e:
            raise ValueError(f"prompt: {e}") from None
        return self

    @property
    def from_input(self) -> bool:
        """The judge model is the step's `judge` input (kind transformers without model_dir): the step checks at spec
        load that the input is wired, and substitutes its model folder at run time (`with_model`)."""
        return self.generator.kind == "transformers" and not self.generator.model_dir

    def with_model(self, folder: str | Path) -> JudgeConfig:
        """The same judge reading the model folder `folder` (the `judge` input's `model/`)."""
        return self.model_copy(update={"generator": self.generator.model_copy(update={"model_dir": str(folder)})})

    @property
    def prompt_name(self) -> str:
        """The prompt file used: the given one, or the built-in default of the mode and scale."""
        if self.prompt is not None:
            return self.prompt
        return "pairwise" if self.mode == "pairwise" else "quality" if self.scale is not None else "correctness"

    def raw_inputs(self) -> list[str]:
        """The files the judge reads that the factory's code does not ship: its prompt file when given by path and
        its model folder when local; a step lists them among its raw inputs, so their contents join its fingerprint."""
        prompt = [self.prompt] if self.prompt is not None and self.prompt not in builtin_judge_prompts() else []
        model = [self.generator.model_dir] if self.generator.kind == "transformers" and self.generator.model_dir else []
        return prompt + model


def check_judge_input(readers: Sequence[str], inputs: Mapping[str, str], judge: str, nobody: str, how: str) -> None:
    """The two ways a step's `judge` input is wired wrong, for a step config's `check_wiring`: a judge without a model
    folder (`readers`: the field paths of those judges, which share the input) and no input wired, or an input that
    no judge reads. `judge` names the judge in the first message, `nobody` and `how` say in the second who could
    read it and how."""
    if readers and "judge" not in inputs:
        raise ValueError(f"{readers[0]}.generator: no model_dir, so the {judge} is the step's `judge` input, which is "
                         "not wired; wire `inputs: {judge: STEP}` (a checkpoint, e.g. an import_model step) or set "
                         "generator.model_dir")
    if "judge" in inputs and not readers:
        raise ValueError(f"inputs.judge: {nobody} reads it (step {inputs['judge']!r}); {how}, or leave the input out")
