"""G-Vendi's settings: the proxy model and projection, a dataset's measurement, targeted synthesis.

Light on purpose: the spec (`gvendi:`) and the synth stage's config (`targeted:`) embed them.
"""

from __future__ import annotations

from pydantic import Field

from factory.stage import StageConfig, no_effect

__all__ = ["DATASET_KINDS", "GVendiSettings", "ProxySettings", "TargetedSynthesis"]

# Artifact kinds that are datasets, and so get a G-Vendi score when the spec asks for one.
DATASET_KINDS = ("corpus", "conversations")


class ProxySettings(StageConfig):
    """The proxy model whose gradients define the space, and how examples are cut and projected."""

    preset: str = Field("tiny", description="Model preset (factory.model.PRESETS) of the freshly initialised proxy "
                                            "used when model_dir is unset; its vocabulary is UTF-8 bytes.")
    model_dir: str | None = Field(None, json_schema_extra={"external_input": True},
                                  description="A trained proxy: a save_pretrained NemotronH folder (a checkpoint "
                                              "artifact's model/).")
    tokenizer_dir: str | None = Field(None, json_schema_extra={"external_input": True},
                                      description="Folder with the proxy's tokenizer.json (a tokens artifact's "
                                                  "tokenizer/); default: model_dir itself.")
    seq_len: int = Field(512, ge=8, description="Tokens per example window (the proxy sees seq_len + 1). Shorter windows "
                                               "give noisier gradients: below ~256 bytes, domains blur into each other.")
    dim: int = Field(1024, ge=8, description="Dimensions of the Rademacher random projection of each gradient.")
    seed: int = Field(0, description="Seed of the fresh proxy's weights, the projection and the sampling.")
    batch_size: int = no_effect(16, "Examples per vmap'd gradient call (memory against speed).")


class GVendiSettings(ProxySettings):
    """G-Vendi of a dataset artifact: how many examples to draw, and the proxy (see ProxySettings)."""

    sample: int = Field(64, ge=2, description="Examples drawn (seeded, uniformly) from the dataset; the cost is one "
                                              "forward and backward pass of the proxy per example, plus the projection.")


class TargetedSynthesis(StageConfig):
    """Prismatic-style targeted synthesis: keep the generated documents that land in the smallest gradient
    clusters of the source data."""

    enabled: bool = Field(False, description="Filter the generated documents this way; off keeps every one.")
    clusters: int = Field(8, ge=2, description="k of the k-means over the source and generated documents' gradients.")
    keep_fraction: float = Field(0.5, gt=0.0, le=1.0, description="Share of the generated documents kept.")
    reference_docs: int = Field(256, ge=2, description="Source documents (a seeded sample) whose gradients are clustered.")
    proxy: ProxySettings = Field(default_factory=ProxySettings, description="Proxy model and projection.")
