"""The one registry of stage kinds: what each kind takes, makes, and how it runs; and the default recipe.

A stage kind is a package of one shape (`factory.stages`): `config.py` with `Config` (a `factory.stage.StageConfig`)
and `stage.py` with `run(config, inputs, output, ctx)`, plus one entry in `KINDS` below. Everything else reads this
registry: the spec (which configs exist, the kinds' spec-load hooks, how the default recipe is wired), the executor
(input checks, resumable and distributed runs, which outputs are registered as MLflow model versions), the
orchestrator (which launcher runs a multi-node step, which kind fans out), `factory plan` (each kind's cost), the
code version (the run module's import closure) and the KFP components.

Adding a stage kind is one package and one entry, e.g.

    "shout": StageKind("factory.stages.shout", inputs={"corpus": In("corpus")}, output="corpus"),

and, to take part in the default recipe, one line in `RECIPE`. The package is imported only when its `Config`,
`run` or a hook is first asked for, so reading this registry costs nothing.

Per-kind hooks, each named "module:function" inside the kind's package (None: the kind has none):

- `cost(step, plan) -> factory.cost.StepCost`: what `factory plan` prints for a step of this kind.
- `spec_defaults(config, spec) -> config`: fills a step's raw config from the rest of the raw spec before it is
  validated (pretrain takes the spec's top-level `model`; curate decontaminates against every evaluated file).
- `evaluated_files(config) -> [path]`: the files a step of this kind evaluates on (raw config), which every curate
  step must decontaminate against.
- `preflight(config, step, storage)`: checks a step's raw inputs when the spec is planned (`factory run`, `plan`, `explain`),
  before any step runs; raises `InputError` with one line (import_model: the model folder it names).
- `architecture(config, storage) -> str`: the architecture of the model a kind makes from nothing (pretrain's NemotronH) or
  brings in (import_model: its folder's). A step with a `model`, `student` or `init` input passes that model's on. `architectures` lists the ones a kind takes (None: any `AutoModelForCausalLM` loads); a step
  given another is refused when the spec is planned, naming the step, the architecture and where it came from.

A kind whose step can run as several KFP tasks (mix: its proxies, one pod each) has a `fanout` (`FanOut`): the
module of its task bodies in `factory.fanout` and the name of its parallel tasks. The pipeline asks the registry
whether a kind fans out, and a step's config whether that step does (`config.fan_out(local)`: rounds and
parallelism, or None for one task); the components for the tasks are generated from this entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class In:
    """One named input of a stage kind: the artifact kind it accepts; an optional input may be left unwired
    (its config's `required_inputs()` may still ask for it)."""

    kind: str
    optional: bool = False


@dataclass(frozen=True)
class FanOut:
    """How a step of a kind runs as several KFP tasks (`factory.fanout`): a prepare task, then per round a ParallelFor
    of `work` tasks planned by the round before, then the task that publishes the step."""

    tasks: str  # dotted module of the task bodies: prepare_task, round_task, work_task, finish_task (no kfp)
    work: str  # what one parallel task does, in its task name: `<step>-<work>-<round>`


@dataclass(frozen=True)
class StageKind:
    """A typed record of one stage kind."""

    package: str  # dotted path of the kind's package: `config.Config` and `stage.run`
    output: str  # the artifact kind it publishes ("corpus", "checkpoint", ...)
    inputs: Mapping[str, In] = field(default_factory=dict)
    resumable: bool = False  # the executor keeps its staging folder between attempts
    distributed: bool = False  # under torchrun, `run` is called on every rank with the same staging folder
    launcher: Literal["ray", "torchrun"] = "torchrun"  # the cluster job a multi-node or multi-GPU step becomes
    registered: bool = False  # its output is registered as an MLflow model version
    cost: str | None = None  # "module:function" in the package: the step's cost for `factory plan`
    spec_defaults: str | None = None  # "module:function": fills the raw config from the raw spec
    evaluated_files: str | None = None  # "module:function": files a step evaluates on (raw config)
    preflight: str | None = None  # "module:function": checks a step's raw inputs when the spec is planned
    architecture: str | None = None  # "module:function": the architecture of the model it makes or brings in
    architectures: tuple[str, ...] | None = None  # the model architectures it takes (None: any causal LM)
    # "module:function"(config, architecture, step): refuses, when the spec is planned, settings the given model's
    # architecture cannot honour (compress's Mamba sizes on a dense transformer)
    check_architecture: str | None = None
    fanout: FanOut | None = None  # one step as several KFP tasks, when its config asks (`config.fan_out(local)`)

    @property
    def run_module(self) -> str:
        """The module whose import closure is the kind's code version."""
        return f"{self.package}.stage"

    @property
    def config(self) -> Any:
        """The kind's `Config` class (imports `config.py` on first use)."""
        return importlib.import_module(f"{self.package}.config").Config

    @property
    def run(self) -> Any:
        """The kind's `run(config, inputs, output, ctx)` (imports `stage.py` on first use)."""
        return importlib.import_module(self.run_module).run

    def hook(self, name: str) -> Callable[..., Any] | None:
        """The hook `name` ("cost", "spec_defaults", "evaluated_files", "preflight", "architecture",
        "check_architecture") as a function, or None."""
        where = getattr(self, name)
        if where is None:
            return None
        module, _, function = where.partition(":")
        return getattr(importlib.import_module(f"{self.package}.{module}"), function)

    def required(self, config: Any) -> list[str]:
        """Input names this config cannot run without, in declaration order."""
        extra = config.required_inputs()
        return [k for k, i in self.inputs.items() if not i.optional or k in extra]


def _trainer(package: str, inputs: Mapping[str, In], **flags: Any) -> StageKind:
    """A kind that trains through the training-stage shell (`factory.train.shell`): resumable, registered, costed
    by its `cost` module on the shared training estimate (`factory.cost.workload.trainer_cost`)."""
    return StageKind(package, output="checkpoint", inputs=inputs, resumable=True, registered=True,
                     cost="cost:cost", **flags)


CHECKPOINT, TOKENS, CONVERSATIONS = In("checkpoint"), In("tokens"), In("conversations")

KINDS: dict[str, StageKind] = {
    # an existing Hugging Face causal LM (local, s3:// or the local Hub cache) as a checkpoint later kinds take
    "import_model": StageKind("factory.stages.import_model", output="checkpoint", registered=True, cost="cost:cost",
                              preflight="config:check_source", architecture="config:source_architecture"),
    "quality": StageKind("factory.stages.quality", output="classifier", registered=True, cost="cost:cost"),
    "curate": StageKind("factory.stages.curate", output="corpus", launcher="ray", cost="cost:cost",
                        spec_defaults="config:spec_defaults", inputs={"quality": In("classifier", optional=True)}),
    "synth": StageKind("factory.stages.synth", output="corpus", cost="cost:cost", inputs={"corpus": In("corpus")}),
    # CLIMB: cluster the corpus, search the mixture with proxy models, derive two blend phases (diverse, then high
    # quality); its corpus carries the clusters and the blend, from which tokenize writes one dataset per super-cluster.
    "mix": StageKind("factory.stages.mix", output="corpus", cost="cost:cost", fanout=FanOut("factory.fanout.mix", "proxy"),
                     inputs={"corpus": In("corpus"), "synthetic": In("corpus", optional=True)}),
    # with a `model` input (an imported model), its tokenizer writes the tokens instead of a trained one
    "tokenize": StageKind("factory.stages.tokenize", output="tokens", cost="cost:cost",
                          inputs={"corpus": In("corpus"), "synthetic": In("corpus", optional=True),
                                  "model": In("checkpoint", optional=True)}),
    # with an `init` checkpoint, continued pretraining of that model (an imported one: long-context extension, ...)
    "pretrain": _trainer("factory.stages.pretrain", {"tokens": TOKENS, "init": In("checkpoint", optional=True)},
                         distributed=True, spec_defaults="config:spec_defaults", architecture="config:architecture"),
    # Minitron: prune the pretrained model (activation importance, width/depth surgery, budget search), then
    # distil it from the unpruned teacher; the distilled student is what later steps of the recipe take.
    "compress": StageKind("factory.stages.compress", output="checkpoint", cost="cost:cost", spec_defaults="config:spec_defaults",
                          architectures=("NemotronHForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                         "MistralForCausalLM"), check_architecture="config:check_architecture",
                          inputs={"model": CHECKPOINT, "tokens": TOKENS}),
    "distill": _trainer("factory.stages.distill", {"student": CHECKPOINT, "teacher": CHECKPOINT, "tokens": TOKENS},
                        distributed=True),
    # `model`: the model the data will train, whose tokenizer counts budget_control's thinking budgets
    "posttrain_data": StageKind("factory.stages.posttrain_data", output="conversations", cost="cost:cost",
                                inputs={"teacher": In("checkpoint", optional=True), "model": In("checkpoint", optional=True)}),
    "sft": _trainer("factory.stages.sft", {"model": CHECKPOINT, "data": CONVERSATIONS}, distributed=True),
    # rl runs in one process: its rollouts come from the one policy copy it trains (or from a server)
    # `judge`: the model of the environments' judges that name no model folder (an imported model: GenRM rewards)
    "rl": _trainer("factory.stages.rl", {"model": CHECKPOINT, "data": CONVERSATIONS,
                                         "judge": In("checkpoint", optional=True)}),
    # on-policy distillation: the student ("model") samples, the teacher scores its tokens (one process, as rl)
    "opd": _trainer("factory.stages.opd", {"model": CHECKPOINT, "teacher": CHECKPOINT, "data": CONVERSATIONS}),
    "reward_model": _trainer("factory.stages.reward_model", {"model": CHECKPOINT}, distributed=True),
    "preference": _trainer("factory.stages.preference", {"model": CHECKPOINT, "data": CONVERSATIONS,
                                                         "reward_model": In("checkpoint", optional=True),
                                                         "judge": In("checkpoint", optional=True)},
                           distributed=True),
    "quantize": StageKind("factory.stages.quantize", output="quantized", cost="cost:cost",
                          architectures=("NemotronHForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                         "MistralForCausalLM"), inputs={"model": CHECKPOINT, "tokens": TOKENS}),
    # `baseline`: another evaluate step whose metrics this one's relative gates compare with (named steps only);
    # `tokens`: the held-out split, needed while the config's perplexity is on; `data`: post-training data whose
    # held-out prompts a `heldout` benchmark asks; `judge`: the model of the benchmark judges that name no model folder
    # (an imported model; preference's `judge` is its GenRM's)
    "evaluate": StageKind("factory.stages.evaluate", output="evaluation", cost="cost:cost",
                          evaluated_files="config:evaluated_files",
                          inputs={"model": CHECKPOINT, "tokens": In("tokens", optional=True),
                                  "baseline": In("evaluation", optional=True),
                                  "data": In("conversations", optional=True),
                                  "judge": In("checkpoint", optional=True)}),
    "release": StageKind("factory.stages.release", output="release", registered=True, cost="cost:cost",
                         inputs={"model": CHECKPOINT, "tokens": TOKENS, "evaluation": In("evaluation"),
                                 "quantized": In("quantized", optional=True)}),
}

# The steps whose checkpoint is the recipe's final model so far, earliest first: quantize, evaluate and release
# take the last enabled one ([import_model →] pretrain → [compress → distill] → [sft → rl → preference]).
FINAL_MODEL = ("import_model", "pretrain", "distill", "sft", "rl", "preference")

# The default recipe, in order: a spec that lists only stage names (`stages:`) runs these, and each input of a
# step comes from the last enabled step of the kinds listed for it, earliest first.
RECIPE: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    ("import_model", {}),
    ("quality", {}),
    ("curate", {"quality": ("quality",)}),
    ("synth", {"corpus": ("curate",)}),
    ("mix", {"corpus": ("curate",), "synthetic": ("synth",)}),
    ("tokenize", {"corpus": ("curate", "mix"), "synthetic": ("synth",), "model": ("import_model",)}),
    ("pretrain", {"tokens": ("tokenize",), "init": ("import_model",)}),
    ("compress", {"model": ("import_model", "pretrain"), "tokens": ("tokenize",)}),
    ("distill", {"student": ("compress",), "teacher": ("import_model", "pretrain"), "tokens": ("tokenize",)}),
    ("posttrain_data", {}),
    ("sft", {"model": ("import_model", "pretrain", "distill"), "data": ("posttrain_data",)}),
    ("rl", {"model": ("import_model", "pretrain", "distill", "sft"), "data": ("posttrain_data",)}),
    # no step of the recipe makes a stronger teacher: `stages: {opd: ...}` is refused, naming named steps instead
    ("opd", {"model": ("import_model", "pretrain", "distill", "sft"), "data": ("posttrain_data",)}),
    # the reward model comes before preference: preference's optional "reward_model" input
    ("reward_model", {"model": ("import_model", "pretrain", "distill", "sft")}),
    ("preference", {"model": ("import_model", "pretrain", "distill", "sft", "rl"), "data": ("posttrain_data",),
                    "reward_model": ("reward_model",)}),
    ("quantize", {"model": FINAL_MODEL, "tokens": ("tokenize",)}),
    ("evaluate", {"model": FINAL_MODEL, "tokens": ("tokenize",)}),
    ("release", {"model": FINAL_MODEL, "tokens": ("tokenize",), "evaluation": ("evaluate",),
                 "quantized": ("quantize",)}),
)


def kind(name: str) -> StageKind:
    """The registered kind `name`; a `KeyError` naming the known kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"no stage kind {name!r} (kinds are {', '.join(KINDS)})") from None
