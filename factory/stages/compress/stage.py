"""The compress stage: Minitron pruning of a NemotronH checkpoint or of a dense transformer (Llama, Qwen2, Qwen3,
Mistral: `factory.stages.compress.dense`), to a fixed shape or under a budget.

Inputs: "model" (an artifact with `model/`, e.g. pretrain's) and "tokens" (a tokens artifact: the
calibration windows come from `calibration_split`, the search's validation windows from `validation_split`).
Output:

    model/          the pruned model folder, of the input's class (stock transformers loads and generates with it)
    compress.json   chosen shape, pattern (NemotronH) or layer count (dense), parameters before/after, layer scores, and with a
                    budget every candidate with its memory breakdown and its loss after a short distillation

With `target`, the model is pruned to that shape. With `budget`, `factory.stages.compress.search` (a dense model:
`dense.dense_candidates`) lists the candidates within it; the largest `search.max_candidates` are pruned and each distilled for
`candidate_steps` steps from the unpruned teacher; the lowest validation loss wins. The chosen model is
written only once everything succeeded, through a temporary folder: no half-pruned model is published.

    from factory.stages.compress import stage
    stage.run(stage.Config(target=PruneTarget(hidden_size=48)), {"model": ckpt, "tokens": toks}, out, StepContext("compress"))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoConfig

from factory.artifacts import Checkpoint, Tokens
from factory.cost import parameter_counts, serving_memory
from factory.model.checkpoints import (
    check_calibration,
    lm_loss,
    load_model,
    save_model,
)
from factory.stage import Artifact, StepContext
from factory.stages.compress.config import DENSE_ARCHITECTURES, Config
from factory.stages.compress.dense import (
    check_dense,
    dense_candidates,
    dense_serving_memory,
    is_dense,
    measure_dense_importance,
    prune_dense,
)
from factory.stages.compress.importance import measure_importance
from factory.stages.compress.search import candidates
from factory.stages.compress.surgery import check_target, pattern_of, prune_model
from factory.train.config import TrainConfig
from factory.train.objectives.logit_distill import DistillationObjective
from factory.train.trainer import Trainer


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Prune the "model" input; write `model/` and `compress.json` into `output`."""
    output = Path(output)
    source = Checkpoint.of(inputs, "model").model_dir
    hf_config = AutoConfig.from_pretrained(source)
    architecture = (hf_config.architectures or [type(hf_config).__name__])[0]
    if architecture in DENSE_ARCHITECTURES:  # what the dense path cannot do, and bad targets: before any weight is read
        check_dense(config, hf_config, architecture, ctx.name)
    calib = Tokens.of(inputs, "tokens").windows(config.calibration_split, config.seq_len, config.calibration_samples)
    check_calibration(calib, config.calibration_samples, f"tokens/{config.calibration_split}")
    teacher = load_model(source)
    dense = is_dense(teacher)
    if not dense and config.target is not None:
        check_target(teacher.config, config.target, "target", config.width_multiple_of)
    torch.manual_seed(config.seed)
    measure = measure_dense_importance if dense else measure_importance
    importance = measure(teacher, calib, config.batch_size, layer_loss=True)
    ctx.log.info("importance_measured", windows=int(calib.shape[0]), base_loss=round(importance.base_loss, 4))

    report: dict = {
        "teacher": _shape(teacher),
        "layer_scores": {
            "loss_increase": [round(float(x), 6) for x in importance.loss_increase],
            "block_influence": [round(float(x), 6) for x in importance.block_influence],
        },
        "calibration": {"split": config.calibration_split, "windows": int(calib.shape[0]), "seq_len": config.seq_len},
    }
    if config.target is not None:
        student = (prune_dense if dense else prune_model)(teacher, importance, config.target)
        chosen = config.target
    else:
        student, chosen, report["candidates"] = _search(config, inputs, teacher, importance, calib, ctx)

    report["student"] = {**_shape(student), "target": chosen.model_dump()}
    params = report["student"]["params"]
    if config.budget is not None:
        memory = (dense_serving_memory(student.config, params, config.budget) if dense
                  else serving_memory(student.config, config.budget.context_len, config.budget.batch))
        report["student"]["memory"] = memory.terms()
    after_loss = lm_loss(student, calib, config.batch_size)
    save_model(student, output / "model", tokenizer_from=source)
    (output / "compress.json").write_text(json.dumps(report, indent=2))
    metrics = {
        "params_before": float(report["teacher"]["params"]),
        "params_after": float(params),
        "calibration_loss_before": importance.base_loss,
        "calibration_loss_after": after_loss,
        "layers_after": float(student.config.num_hidden_layers if dense else len(student.config.layers_block_type)),
    }
    return metrics


def _shape(model) -> dict:
    """What compress.json says of a model: NemotronH's pattern and `factory.cost` count; a dense model's class, sizes and
    parameter count (factory.cost reads NemotronH shapes only)."""
    c = model.config
    if not is_dense(model):
        return {"pattern": pattern_of(c), "params": parameter_counts(c).total}
    sizes = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")
    return {"architecture": type(model).__name__, **{k: getattr(c, k) for k in sizes},
            "params": sum(p.numel() for p in model.parameters())}


def _search(config: Config, inputs, teacher, importance, calib, ctx: StepContext):
    """Prune and briefly distil the largest candidates within the budget; return (model, target, report)."""
    assert config.budget is not None
    dense = is_dense(teacher)
    if dense:
        fits = dense_candidates(teacher, importance, config.search, config.budget, config.layer_metric)
    else:
        fits = candidates(teacher.config, importance, config.search, config.budget, config.layer_metric, config.width_multiple_of)
    valid = Tokens.of(inputs, "tokens").windows(config.validation_split, config.seq_len, config.validation_samples)
    if valid.shape[0] == 0:
        valid = calib
    train = TrainConfig(seq_len=config.seq_len, micro_batch_size=config.batch_size, steps=config.candidate_steps,
                        lr=config.candidate_lr, warmup_steps=0, decay_fraction=0.0, checkpoint_interval=0, seed=config.seed)
    report, best = [], None
    for cand in fits[: config.search.max_candidates]:
        torch.manual_seed(config.seed)
        student = (prune_dense if dense else prune_model)(teacher, importance, cand.target)
        pruned_loss = lm_loss(student, valid, config.batch_size)
        Trainer(DistillationObjective(student, teacher), list(calib), train).fit()
        student.eval()
        loss = lm_loss(student, valid, config.batch_size)
        entry = {"target": cand.target.model_dump(), **{k: v for k, v in _shape(student).items() if k != "params"},
                 "params": cand.params,
                 "memory_bytes": cand.memory, "memory_gib": round(cand.memory_total / 1024**3, 6),
                 "valid_loss_pruned": round(pruned_loss, 6), "valid_loss_distilled": round(loss, 6)}
        report.append(entry)
        ctx.log.info("candidate", **{k: v for k, v in entry.items() if k not in ("target", "memory_bytes")})
        if best is None or loss < best[0]:
            best = (loss, student, cand.target)
    assert best is not None
    return best[1], best[2], report
