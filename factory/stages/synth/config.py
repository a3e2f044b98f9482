"""The synth stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.generate import GenerationParams
from factory.generate.settings import GeneratorSettings
from factory.gvendi import TargetedSynthesis
from factory.stage import StageConfig, no_effect
from factory.stages.synth.prompts import available
from factory.tiers import TIERS

LOW_QUALITY_TASKS = ("wikipedia",)


HIGH_QUALITY_TASKS = ("diverse_qa", "distill", "extract_knowledge", "knowledge_list")


def _default_tasks() -> dict[int, tuple[str, ...]]:
    return {0: LOW_QUALITY_TASKS, 1: LOW_QUALITY_TASKS, 2: (), 3: HIGH_QUALITY_TASKS, 4: HIGH_QUALITY_TASKS}


class Config(StageConfig):
    """Synthetic rephrasing: tasks per quality tier, chunking, sampling and the generator."""

    tasks_by_tier: dict[int, tuple[str, ...]] = Field(
        default_factory=_default_tasks,
        description="Prompt names to run on documents of each quality_tier (0-4); a missing tier gets none.")
    prompt_dir: str | None = Field(None, json_schema_extra={"external_input": True}, description="Folder of <task>.txt prompts replacing the built-in ones.")
    chunk_unit: Literal["chars", "tokens"] = Field(
        "chars", description="Unit of chunk_size: characters, or tokens of the generator's tokenizer (transformers).")
    chunk_size: int = Field(4000, ge=16, description="Most characters or tokens of a document per prompt.")
    use_chat: bool = Field(True, description="Send chat messages (chat template / chat endpoint), else plain prompts.")
    generation: GenerationParams = Field(default_factory=GenerationParams, description="Sampling parameters.")
    max_docs: int | None = Field(None, ge=1, description="Most source documents to rewrite (those with a task); all if unset.")
    min_output_chars: int = Field(50, ge=0, description="A rewritten chunk shorter than this (after cleaning) is dropped.")
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings, description="Which model rewrites the text.")
    targeted: TargetedSynthesis = Field(
        default_factory=TargetedSynthesis,
        description="Prismatic-style targeted synthesis (factory.gvendi): with enabled, keep only the rewrites whose "
                    "proxy-model gradients land in the smallest gradient clusters of the source corpus.")
    request_batch: int = no_effect(64, "Prompts handed to the generator at once (bounds memory, feeds concurrency).")
    docs_per_part: int = no_effect(10_000, "Documents per output part-NNNNN.jsonl.gz file.")

    @model_validator(mode="after")
    def _known_tasks(self) -> Config:
        bad = sorted(set(self.tasks_by_tier) - set(TIERS))
        if bad:
            raise ValueError(f"tasks_by_tier: tiers must be {TIERS[0]}-{TIERS[-1]}, got {bad}")
        if self.prompt_dir is None:  # a custom folder is checked when it is read
            known = set(available())
            for tier, tasks in self.tasks_by_tier.items():
                unknown = sorted(set(tasks) - known)
                if unknown:
                    raise ValueError(f"tasks_by_tier.{tier}: unknown task(s) {unknown}; known: {sorted(known)}")
        return self

    def tasks(self) -> list[str]:
        """Every task some tier runs, in first-use order."""
        return list(dict.fromkeys(t for tier in sorted(self.tasks_by_tier) for t in self.tasks_by_tier[tier]))


def tiny() -> Config:
    """The smoke preset: a few short chunks per document and short completions, for a tiny local model on CPU."""
    return Config(chunk_size=600, max_docs=16, min_output_chars=20,
                  generation=GenerationParams(max_new_tokens=64), generator=GeneratorSettings(batch_size=8))
