"""What a release says about itself (model card, generation defaults) and whether it goes to the Hub."""

from __future__ import annotations

from pydantic import Field, model_validator

from factory.stage import StageConfig, no_effect

__all__ = ["Config"]


class Config(StageConfig):
    """What the released folder and its model card say; whether to push it to the Hub."""

    model_name: str = Field("nemotron-factory-model", min_length=1, description="Model name used as the card's title and in model-index.")
    license: str | None = Field(
        None, description="License identifier for the card's front matter (Hub license ids); default: an imported base "
                          "model's license (its import step's, or its own card's), else apache-2.0 for a model trained "
                          "from scratch.")
    language: list[str] = Field(default_factory=lambda: ["en"], description="ISO 639-1 codes of the training text's languages.")
    tags: list[str] | None = Field(
        None, description="Hub tags; default: the architecture's (nemotron-h and hybrid-mamba for the factory's NemotronH, "
                          "the model type of an imported one) and model-factory.")
    description: str = Field("", description="A paragraph placed under the card's title.")
    datasets: list[str] = Field(
        default_factory=list,
        description="Hugging Face Hub dataset ids (ORG/NAME) the model was trained on (the Hub datasets your sources are "
                    "copies of), for the card's `datasets` metadata and model-index; the lineage's local paths and store "
                    "URIs are named in the card's body only, never as Hub metadata.")
    do_sample: bool = Field(
        False, description="Whether generation_config.json samples by default; false (greedy) makes the card's snippets "
                           "print the same text on every run.")
    temperature: float | None = Field(
        None, gt=0, description="Sampling temperature written to generation_config.json; only with do_sample (default "
                                "then 0.7).")
    top_p: float | None = Field(
        None, gt=0, le=1, description="Nucleus sampling mass written to generation_config.json; only with do_sample "
                                      "(default then 0.95).")
    max_new_tokens: int = Field(256, ge=1, description="Default generation length written to generation_config.json.")
    push: bool = no_effect(False, "Upload the folder to the Hugging Face Hub (needs HF_TOKEN in the environment).")
    repo_id: str | None = no_effect(None, "Hub repository ('owner/name') to push to; required when push is true.")
    private: bool = no_effect(True, "Create the Hub repository as private when it does not exist.")

    @model_validator(mode="after")
    def _datasets_are_hub_ids(self) -> Config:
        for i, hub_id in enumerate(self.datasets):
            if hub_id.count("/") != 1 or hub_id.startswith("/") or hub_id.endswith("/") or "://" in hub_id:
                raise ValueError(f"datasets.{i}: {hub_id!r} is not a Hub dataset id (ORG/NAME); local data is named in "
                                 "the card's body from the lineage")
        return self

    @model_validator(mode="after")
    def _sampling_settings_need_sampling(self) -> Config:
        for name in ("temperature", "top_p"):
            if getattr(self, name) is not None and not self.do_sample:
                raise ValueError(f"{name}: a sampling setting, and generation_config.json is greedy; set do_sample: true "
                                 f"to sample, or remove {name}")
        return self

    @model_validator(mode="after")
    def _push_needs_repo(self) -> Config:
        if self.push and not self.repo_id:
            raise ValueError("repo_id: required when push is true (e.g. 'my-org/my-model')")
        return self
