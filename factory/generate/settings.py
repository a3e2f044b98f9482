"""Settings of a generator as a stage config: a local transformers model folder, or an OpenAI-compatible server.

Every stage that generates takes these settings (synth's `generator`, curate's math `cleanup.generator`,
posttrain_data's `teacher`, evaluate's `generator`, rl's `rollout.generator`) and opens the generator with
`open()`; they live below the stages so no stage imports another.

    settings = GeneratorSettings(kind="openai", base_url="http://vllm:8000", model="nvidia/model")
    generator = settings.open()                       # an OpenAIGenerator
    GeneratorSettings().open(model_dir=checkpoint)    # a local model: the step's own model when model_dir is unset
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from factory.errors import SpecError
from factory.generate.openai_endpoint import OpenAIGenerator
from factory.generate.params import Generator
from factory.generate.transformers_model import TransformersGenerator
from factory.stage import StageConfig, no_effect

__all__ = ["GeneratorSettings"]

# The fields only one kind reads: a value other than the default for the other kind is refused, not ignored.
_ONLY = {
    "transformers": ("model_dir", "dtype", "device"),
    "openai": ("base_url", "model", "api_key_env", "max_concurrency", "max_retries", "timeout_s"),
}


class GeneratorSettings(StageConfig):
    """Which generator writes the text, and how it is reached."""

    ROLE: ClassVar[str] = "generator"  # what the error messages call it

    kind: Literal["transformers", "openai"] = Field(
        "transformers", description="'transformers': a local model folder (model_dir, or the step's model input where "
        "the stage has one); 'openai': an OpenAI-compatible server (vLLM, NIM, transformers serve).")
    model_dir: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="transformers: save_pretrained folder of the model; unset: the step's model input (evaluate: the "
                    "checkpoint evaluated; posttrain_data: its 'teacher' input; rl: the policy being trained).")
    dtype: str | None = Field(None, description="transformers: torch dtype to load the weights in (e.g. 'bfloat16').")
    device: str = no_effect("cpu", "transformers: torch device to run on.")
    # Not `no_effect`: a local model seeds sampling per batch, and padding a batch changes its arithmetic.
    batch_size: int = Field(8, ge=1, description="Prompts per forward pass (transformers) or per /v1/completions request (openai).")
    base_url: str | None = Field(None, description="openai: server address, e.g. http://vllm:8000 (with or without /v1).")
    model: str | None = Field(None, description="openai: model name the server serves.")
    api_key_env: str = no_effect("OPENAI_API_KEY", "openai: environment variable holding the API key, if any.")
    max_concurrency: int = no_effect(8, "openai: most requests in flight at once.")
    max_retries: int = no_effect(5, "openai: retries of a request after a 429, 5xx or connection error.")
    timeout_s: float = no_effect(120.0, "openai: seconds to wait for one answer.")

    @model_validator(mode="after")
    def _complete(self) -> GeneratorSettings:
        if self.kind == "openai" and not (self.base_url and self.model):
            raise ValueError(f"{self.ROLE} kind 'openai' needs base_url and model")
        changed = self.changed()
        stray = [f for kind, only in _ONLY.items() if kind != self.kind for f in only if f in changed]
        if stray:
            raise ValueError(f"{self.ROLE} kind {self.kind!r} does not read {', '.join(stray)}; remove "
                             f"{'it' if len(stray) == 1 else 'them'}")
        return self

    def changed(self) -> set[str]:
        """The fields whose value is not their default (a spec dumped with its defaults and loaded again sets them
        all, so "given" cannot tell)."""
        fields = type(self).model_fields.items()
        return {name for name, info in fields if getattr(self, name) != info.get_default(call_default_factory=True)}

    def open(self, model_dir: str | Path | None = None, model_id: str | None = None) -> Generator:
        """The generator these settings describe. A local model loads `self.model_dir`, else `model_dir` (the step's
        model input), and is named `model_id` in output metadata (default: its folder's name)."""
        if self.kind == "openai":
            return OpenAIGenerator(self.base_url, self.model, api_key=os.environ.get(self.api_key_env),
                                   max_concurrency=self.max_concurrency, max_retries=self.max_retries,
                                   timeout_s=self.timeout_s, batch_size=self.batch_size)
        folder = self.model_dir or model_dir
        if folder is None:
            raise SpecError(f"{self.ROLE}.model_dir: set it to a model folder (a save_pretrained folder)")
        return TransformersGenerator(folder, device=self.device, batch_size=self.batch_size, dtype=self.dtype,
                                     model_id=model_id)
