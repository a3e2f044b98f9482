"""The import_model stage's config: where an existing Hugging Face causal LM comes from, and what to do with its chat
template (loading a spec imports it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from factory.stage import StageConfig


class Config(StageConfig):
    """Bring an existing causal LM in as a checkpoint every later stage can take (sft, rl, preference, reward_model,
    distill, quantize, evaluate, release, and pretrain's `init` for continued pretraining)."""

    source: str = Field(
        ..., json_schema_extra={"external_input": True},
        description="The model folder: a local path, an s3://bucket/prefix, or a Hub reference hf://ORG/NAME@REVISION "
                    "resolved offline in this machine's Hugging Face cache (HF_HOME); nothing is downloaded.")
    hub_id: str | None = Field(
        None, description="The model's id on the Hugging Face Hub (ORG/NAME), for the release card's base_model; "
                          "default: the hf:// source's. A local or s3:// source without one is named only locally.")
    license: str | None = Field(
        None, description="The base model's license (an SPDX id or `other`) for the release card; default: the "
                          "source's own README front matter, when it says.")
    chat_template: Literal["keep", "factory"] = Field(
        "keep", description="keep: post-train with the model's own chat template; factory: replace it with the "
                            "factory's template with the `detailed thinking on|off` switch, adding its special tokens "
                            "and growing the embeddings when the tokenizer lacks them (this path loads the weights).")

    @field_validator("hub_id")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or value.startswith("/") or value.endswith("/")):
            raise ValueError(f"{value!r}: a Hub model id is ORG/NAME")
        return value


def check_source(config: Config, step: str, storage: Any = None) -> None:
    """The plan-time check of the source (the registry's `preflight` hook): config, weights, shards against their
    index, tokenizer and architecture, read without loading a weight; one `InputError` naming the step and what to
    fix. Every `factory run`, `plan` and `explain` runs it before any step trains."""
    from factory.stages.import_model.source import inspect_source  # reads the folder: only when a spec is planned

    inspect_source(config.source, step, config.hub_id, getattr(storage, "endpoint_url", None), getattr(storage, "region", None))


def source_architecture(config: Config, storage: Any = None) -> str:
    """The architecture the source's `config.json` names (its first `architectures` entry), read alone."""
    from factory.stages.import_model.source import read_config  # the folder's reader: only when a spec is planned

    config_json = read_config(config.source, getattr(storage, "endpoint_url", None), getattr(storage, "region", None))
    return (config_json.get("architectures") or ["unknown"])[0]
