"""Settings of a generator as a stage config: a local transformers model folder, or an OpenAI-compatible server.

Stages that generate (synth, the post-training data stage's teacher) take these settings in their config; they
live below the stages so no stage imports another.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from factory.stage import StageConfig, no_effect

__all__ = ["GeneratorSettings"]


class GeneratorSettings(StageConfig):
    """Which generator writes the text (synth's rewrites; a teacher subclasses it), and how it is reached."""

    ROLE: ClassVar[str] = "generator"  # what the error messages call it

    kind: Literal["transformers", "openai"] = Field(
        "transformers", description="'transformers': a local model folder; 'openai': an OpenAI-compatible server.")
    model_dir: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="transformers: save_pretrained folder of the model.")
    dtype: str | None = Field(None, description="transformers: torch dtype to load the weights in (e.g. 'bfloat16').")
    device: str = no_effect("cpu", "transformers: torch device to run on.")
    batch_size: int = no_effect(8, "Prompts per forward pass (transformers) or per /v1/completions request (openai).")
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
        return self
