"""The pretrain stage: train a hybrid Mamba-2 / attention model from scratch on packed token windows.

Input "tokens" (a tokenize artifact): `train.bin`/`train.idx` (Megatron indexed dataset) and
`tokenizer/` (vocabulary size and special token ids come from it). Output:

    model/          `NemotronHForCausalLM.save_pretrained` folder (safetensors, config, generation config) with
                    the tokenizer's files (chat template included), so post-training reads it from here
    metrics.jsonl   one record per step: loss, lr, grad_norm, tokens, tokens_per_s, skipped_steps
    loss.png        the training-loss curve

Training runs through the training-stage shell (`factory.train.shell`): precision converters (fp32, bf16 autocast,
fp8 or nvfp4 linears; master weights stay fp32), DDP / FSDP2 under torchrun, checkpoints and resume, metrics, the
loss plot and the export; the saved `model/` is always a plain transformers model with nn.Linear layers.

Data: without `blend`, the blend the tokens artifact carries (`blend.json`: tokenize writes it when a mix step
is in the spec, one dataset per super-cluster, phase 1 diverse, phase 2 high quality), else the "train"
windows in a seeded order. With `blend`, phases of dataset weights (`BlendedSamples`): a dataset is a
`PREFIX.bin/.idx` pair of the "tokens" input ("train", "hq", ...) or "INPUT/PREFIX" in another input; the
phase switches at its `until_fraction` of the run's tokens.

Distributed: under `torchrun` (WORLD_SIZE > 1) the stage joins the env:// process group itself (gloo
on CPU, NCCL on GPU), trains with DDP or FSDP2 (`data_parallel`), writes files on rank 0 only, and
barriers before returning; every rank resumes from the same checkpoint.

    torchrun --standalone --nproc-per-node 2 $(which factory) step pretrain examples/smoke.yaml

Resumable: while it runs, `checkpoints/step-NNNNNN/` in the staging folder hold everything needed to
continue (model, optimizer, schedule position, data position, RNG states); a restarted attempt
continues from the latest complete one and reproduces the uninterrupted run. They are removed once
`model/` is written, so the published artifact holds only the files above.

Engines: `engine: factory` (the default) trains the transformers model itself; `engine: megatron` trains
Megatron-Core's `MambaModel` of the same shape (`factory.engines.megatron`: its parallel `layout`, Megatron DDP,
distributed checkpoints, Transformer Engine's FP8 / NVFP4 on GPU) on the same data in the same order, and exports
the same `model/`. Continued pretraining (`init`) works with either: Megatron loads the init model's weights.

Run alone:

    from factory.stage import Artifact, StepContext
    from factory.stages import pretrain
    pretrain.run(pretrain.Config(steps=300), {"tokens": Artifact(tokens_dir, {})}, out_dir, StepContext("pretrain"))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError
from transformers import AutoTokenizer

from factory.artifacts import Checkpoint, Tokens
from factory.errors import InputError
from factory.model import build_model, count_parameters
from factory.model.checkpoints import load_model
from factory.stage import Artifact, StepContext
from factory.stages.pretrain.config import Config
from factory.tokens import PackedSequences
from factory.train.config import BlendPhase, check_phases
from factory.train.objectives.causal_lm import CausalLMObjective
from factory.train.sampler import BlendedSamples
from factory.train.shell import TrainingShell


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train `config.model` (or continue the `init` input's model) on the tokens inputs; write `model/`, `metrics.jsonl`,
    `loss.png` (rank 0 only)."""
    tokens = Tokens.of(inputs, "tokens")
    blend = config.blend if config.blend is not None else tokens_blend(tokens.path)
    names = ["train"] if blend is None else list(dict.fromkeys(n for phase in blend for n in phase.weights))
    datasets = {name: _read_dataset(inputs, name, config.seq_len) for name in names}
    tokenizer = tokens.tokenizer()
    megatron, engine = config.engine == "megatron", None
    if megatron:
        # megatron-core's model and training code takes seconds to import: runs of the factory engine skip it
        from factory.engines.megatron.engine import MegatronCausalLM, MegatronEngine

        engine = MegatronEngine(config.layout, config.expert_parallel)
    with TrainingShell(config, output, ctx, plot_title="pretraining loss", engine=engine) as shell:
        if blend is None:
            data = datasets["train"]
        else:
            data_ranks = config.layout.data if config.layout else shell.world_size  # samples drawn per step / rows
            total = config.steps * config.micro_batch_size * config.grad_accum * data_ranks
            data = BlendedSamples(datasets, blend, total, config.seed)
            if shell.rank == 0:
                ctx.log.info("blend", source="config" if config.blend is not None else "tokens/blend.json (mix step)",
                             phases=[{"until_fraction": p.until_fraction, "weights": dict(p.weights)} for p in blend])
        if shell.rank == 0:
            for name, ds in datasets.items():
                ctx.log_dataset(name=f"tokens/{name}", uri=inputs["tokens"].uri, digest=inputs["tokens"].manifest.get("fingerprint", ""),
                                context="training", profile={"samples": len(ds), "tokens": ds.num_tokens,
                                                             "documents": ds.num_documents, "seq_len": config.seq_len})
        if "init" in inputs:  # continued pretraining: the init model, its own architecture and tokenizer
            model = _init_model(Checkpoint.of(inputs, "init").model_dir, tokenizer)
            params, shape = count_parameters(model), type(model).__name__
        else:
            model_config = config.model.resolve()
            special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                       "pad_token_id": tokenizer.pad_token_id}
            # Megatron initialises its own model: the transformers one only says what to build and export (no weights)
            model = build_model(model_config, len(tokenizer), device="meta" if megatron else "cpu", **special)
            params, shape = count_parameters(model), f"{config.model.preset}: {model_config.pattern}"
        model = shell.prepare(model)
        ctx.log.info("model_built", model=shape, params=params, precision=config.precision, vocab_size=len(tokenizer),
                     datasets=list(datasets), device=shell.device, rank=shell.rank, world_size=shell.world_size,
                     engine=config.engine)
        objective = MegatronCausalLM(model) if megatron else CausalLMObjective(model)
        result = shell.fit(shell.trainer(objective, data, tokenizer=tokenizer))
    return {**result.summary, "params": float(params)} if shell.rank == 0 else result.summary


def _init_model(model_dir: Path, tokenizer):
    """The `init` checkpoint's model, checked against the tokens' tokenizer: the token files must be written with the
    model's own tokenizer (tokenize with a `model` input), or every id would mean another token to it."""
    theirs = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise InputError(f"{model_dir}: the tokens were written with another tokenizer than this model's; continued "
                         "pretraining reads token files its model's tokenizer wrote (give tokenize this model as its "
                         "`model` input)")
    return load_model(model_dir).train()


def tokens_blend(folder: Path) -> list[BlendPhase] | None:
    """The blend phases a tokens artifact carries (`blend.json`, written from a mix step's corpus), or None."""
    path = Path(folder) / "blend.json"
    if not path.is_file():
        return None
    try:
        phases = [BlendPhase.model_validate(p) for p in json.loads(path.read_text())]
        check_phases(phases)
    except (OSError, ValueError, TypeError, ValidationError) as e:
        raise InputError(f"{path}: not a list of blend phases ({e}); rerun the tokenize step") from None
    return phases


def _read_dataset(inputs: Mapping[str, Artifact], name: str, seq_len: int) -> PackedSequences:
    """Packed windows of dataset `name`: "PREFIX" is `PREFIX.bin/.idx` in the "tokens" input, "INPUT/PREFIX" the same
    in input INPUT (a stage may receive several token artifacts)."""
    input_name, _, prefix = name.rpartition("/")
    input_name = input_name or "tokens"
    if input_name not in inputs:
        raise InputError(f"blend: dataset {name!r} names input {input_name!r}, not among the inputs {sorted(inputs)}")
    data = Tokens.of(inputs, input_name).packed(prefix, seq_len)
    if len(data) == 0:
        raise InputError(
            f"{inputs[input_name].path / (prefix + '.bin')}: {data.num_tokens} tokens, fewer than one window of "
            f"seq_len + 1 = {seq_len + 1}; lower seq_len or add data")
    return data
