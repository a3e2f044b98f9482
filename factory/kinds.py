"""The one registry of stage kinds: what each kind takes, makes, and how it runs.

A stage kind is a module exporting `Config` and `run(config, inputs, output, ctx)` (see `factory.stage`)
plus one entry in `KINDS` below. Everything else reads this registry: the spec (which configs exist, how
the default recipe is wired), the executor (input checks, resumable and distributed runs, which outputs
are registered as MLflow model versions), the orchestrator (which launcher runs a multi-node step), the
code version (the kind module's import closure) and the test that checks the KFP components.

Adding a stage kind is one module and one entry, e.g.

    "shout": StageKind("factory.shout", inputs={"corpus": In("corpus", recipe=("curate",))}, output="corpus"),

The module is imported only when its `Config` or `run` is first asked for, so reading this registry
costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal


@dataclass(frozen=True)
class In:
    """One named input of a stage kind.

    `kind` is the artifact kind it accepts. `recipe` names the steps of the default recipe that can feed
    it, earliest first: a spec that lists only stage names wires it to the last of them that is enabled
    (so `evaluate.model` comes from `pretrain`, or from a later post-training step once one exists).
    An optional input is wired only when such a step is enabled (its config's `required_inputs()` may
    still ask for it).
    """

    kind: str
    recipe: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class StageKind:
    """A typed record of one stage kind."""

    module: str  # dotted path of the module with `Config` and `run`
    output: str  # the artifact kind it publishes ("corpus", "checkpoint", ...)
    inputs: Mapping[str, In] = field(default_factory=dict)
    resumable: bool = False  # the executor keeps its staging folder between attempts
    distributed: bool = False  # under torchrun, `run` is called on every rank with the same staging folder
    launcher: Literal["ray", "torchrun"] = "torchrun"  # the cluster job a multi-node or multi-GPU step becomes
    registered: bool = False  # its output is registered as an MLflow model version

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def config(self) -> Any:
        """The kind's `Config` class (imports the module on first use)."""
        return self.load().Config

    @property
    def run(self) -> Any:
        """The kind's `run(config, inputs, output, ctx)` (imports the module on first use)."""
        return self.load().run

    def required(self, config: Any) -> list[str]:
        """Input names this config cannot run without, in declaration order."""
        extra = config.required_inputs()
        return [k for k, i in self.inputs.items() if not i.optional or k in extra]


# The steps whose checkpoint quantize, evaluate and release take, earliest first: the last enabled one is the
# recipe's final model (pretrain → [compress → distill] → [sft → rl → preference]).
POST_TRAINED = ("pretrain", "distill", "sft", "rl", "preference")

# The default recipe, in dependency order: a spec that lists only stage names runs its stages in this order.
KINDS: dict[str, StageKind] = {
    "quality": StageKind("factory.curate.quality.stage", output="classifier", registered=True),
    "curate": StageKind("factory.curate", output="corpus", launcher="ray",
                        inputs={"quality": In("classifier", ("quality",), optional=True)}),
    "synth": StageKind("factory.synth", output="corpus", inputs={"corpus": In("corpus", ("curate",))}),
    # CLIMB: cluster the corpus, search the mixture with proxy models, derive two blend phases (diverse, then high
    # quality); its corpus carries the clusters and the blend, from which tokenize writes one dataset per super-cluster.
    "mix": StageKind("factory.mix.stage", output="corpus",
                     inputs={"corpus": In("corpus", ("curate",)), "synthetic": In("corpus", ("synth",), optional=True)}),
    "tokenize": StageKind("factory.tokenize", output="tokens",
                          inputs={"corpus": In("corpus", ("curate", "mix")), "synthetic": In("corpus", ("synth",), optional=True)}),
    "pretrain": StageKind("factory.train.pretrain", output="checkpoint", resumable=True, distributed=True, registered=True,
                          inputs={"tokens": In("tokens", ("tokenize",))}),
    # Minitron: prune the pretrained model (activation importance, width/depth surgery, budget search), then
    # distil it from the unpruned teacher; the distilled student is what later steps of the recipe take.
    "compress": StageKind("factory.compress.stage", output="checkpoint",
                          inputs={"model": In("checkpoint", ("pretrain",)), "tokens": In("tokens", ("tokenize",))}),
    "distill": StageKind("factory.distill.stage", output="checkpoint", resumable=True, registered=True,
                         inputs={"student": In("checkpoint", ("compress",)), "teacher": In("checkpoint", ("pretrain",)),
                                 "tokens": In("tokens", ("tokenize",))}),
    "posttrain_data": StageKind("factory.posttrain.data", output="conversations",
                                inputs={"teacher": In("checkpoint", (), optional=True)}),
    "sft": StageKind("factory.posttrain.sft", output="checkpoint", resumable=True, distributed=True, registered=True,
                     inputs={"model": In("checkpoint", ("pretrain", "distill")), "data": In("conversations", ("posttrain_data",))}),
    "rl": StageKind("factory.posttrain.rl", output="checkpoint", resumable=True, registered=True,
                    inputs={"model": In("checkpoint", ("pretrain", "distill", "sft")), "data": In("conversations", ("posttrain_data",))}),
    # The reward model comes before preference in dependency order: preference's optional "reward_model" input.
    "reward_model": StageKind("factory.posttrain.reward_model", output="checkpoint", resumable=True, registered=True,
                              inputs={"model": In("checkpoint", ("pretrain", "distill", "sft"))}),
    "preference": StageKind("factory.posttrain.preference", output="checkpoint", resumable=True, registered=True,
                            inputs={"model": In("checkpoint", ("pretrain", "distill", "sft", "rl")), "data": In("conversations", ("posttrain_data",)),
                                    "reward_model": In("checkpoint", ("reward_model",), optional=True)}),
    "quantize": StageKind("factory.quantize.stage", output="quantized",
                          inputs={"model": In("checkpoint", POST_TRAINED), "tokens": In("tokens", ("tokenize",))}),
    # `baseline`: another evaluate step whose metrics this one's relative gates compare with (named steps only)
    "evaluate": StageKind("factory.evaluate", output="evaluation",
                          inputs={"model": In("checkpoint", POST_TRAINED), "tokens": In("tokens", ("tokenize",)),
                                  "baseline": In("evaluation", optional=True)}),
    "release": StageKind("factory.release", output="release", registered=True,
                         inputs={"model": In("checkpoint", POST_TRAINED), "tokens": In("tokens", ("tokenize",)),
                                 "evaluation": In("evaluation", ("evaluate",)),
                                 "quantized": In("quantized", ("quantize",), optional=True)}),
}


def kind(name: str) -> StageKind:
    """The registered kind `name`; a `KeyError` naming the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"no stage kind {name!r} (kinds are {', '.join(KINDS)})") from None
