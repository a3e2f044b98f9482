"""The quantize stage: PTQ of a causal LM (NemotronH; Llama, Qwen2, Qwen3, Mistral) to FP8, NVFP4 and
sensitivity-based mixed precision, exported in Model Optimizer's Hugging Face format (byte for byte what Model
Optimizer's own export writes) and as compressed-tensors, and gated on perplexity and task accuracy read back from
the exported files.

Inputs: "model" (an artifact with `model/`) and "tokens" (calibration windows from `calibration_split`,
perplexity windows from `eval_split`, the tokenizer for the task sets). Output, one folder per variant plus a
report:

    fp8/  nvfp4/  mixed/     ModelOpt HF checkpoints (hf_quant_config.json, config.json, model.safetensors)
    fp8-compressed-tensors/  the fp8 and nvfp4 variants as compressed-tensors checkpoints (the same quantized
    nvfp4-compressed-tensors/  weights; stock transformers loads them on CPU)
    quantize.json            BF16's perplexity and task accuracy; per variant: its format and export, formats per
                             linear, the linears kept in BF16, effective bits, perplexity and task accuracy (with
                             standard errors, perplexity's over `eval_windows` windows of `seq_len`) of the variant as loaded back from disk, the gaps to BF16, its gates

Every variant is scored as loaded back from its files: the ModelOpt ones through `load_modelopt` (what vLLM
computes, emulated), the compressed-tensors ones through stock transformers. Task accuracy is greedy-target
accuracy on cloze sets (`tasks`, `task_files`; `factory.tasks.scoring`), with its standard error and the paired
standard error of the drop against BF16 on the same items. A variant whose perplexity gap exceeds its gate
(1% FP8, 3% NVFP4 and mixed by default; a compressed-tensors variant takes its format's gate), or whose accuracy
drop on a set exceeds `max_accuracy_drop`, fails the step with one message naming the variant, its gap and the
gate; variants are written into a temporary folder and moved into place only when every gate passed.

    from factory.stages.quantize import stage
    stage.run(stage.Config(), {"model": ckpt, "tokens": toks}, out, StepContext("quantize"))
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from factory.artifacts import Checkpoint, Tokens
from factory.errors import UserError
from factory.model.checkpoints import check_calibration, load_model
from factory.precision.nvfp4 import BLOCK
from factory.stage import Artifact, StepContext
from factory.stages.quantize import ptq
from factory.stages.quantize.compressed_tensors_format import (
    write_compressed_tensors,
)
from factory.stages.quantize.config import Config
from factory.stages.quantize.modelopt_format import load_modelopt, write_modelopt
from factory.tasks.scoring import score_set
from factory.tasks.sets import builtin_path, read_set


class GateError(UserError):
    """A quantized variant lost more perplexity than its gate allows."""




def nemotron_exclusions(layer_types: list[str]) -> list[str]:
    """Attention layers and the Mamba layer right before each (it feeds the attention), as fnmatch patterns."""
    out = []
    for i, kind in enumerate(layer_types):
        if kind == "full_attention":
            out.append(f"model.layers.{i}.mixer.*")
            j = i - 1
            while j >= 0 and layer_types[j] != "linear_attention":
                j -= 1
            if j >= 0:
                out.append(f"model.layers.{j}.mixer.*")
    return out


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Quantize the "model" input into each variant; write the variants and quantize.json into `output`."""
    output = Path(output)
    source = Checkpoint.of(inputs, "model").model_dir
    tokens = Tokens.of(inputs, "tokens")
    calib = tokens.windows(config.calibration_split, config.seq_len, config.calibration_samples)
    check_calibration(calib, config.calibration_samples, f"tokens/{config.calibration_split}")
    evalw = tokens.windows(config.eval_split, config.seq_len, config.eval_samples)
    check_calibration(evalw, 1, f"tokens/{config.eval_split}")
    task_sets = _task_sets(config)
    tokenizer = tokens.tokenizer() if task_sets else None
    model = load_model(source)
    with torch.no_grad():  # the reference is the BF16 model: round every weight through BF16 once
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    exclude = tuple(config.exclude)
    if config.preset == "nemotron":
        if not hasattr(model.config, "layers_block_type"):
            raise UserError(f"quantize: preset 'nemotron' keeps NemotronH's attention and Mamba layers in BF16; this model is a "
                            f"{type(model).__name__}: use preset 'none' and exclude patterns")
        exclude += tuple(nemotron_exclusions(list(model.config.layers_block_type)))
    linears = ptq.quantizable_linears(model, exclude)
    if not linears:
        raise UserError("quantize: every linear is excluded (exclude / preset); nothing to quantize")
    for name, module in linears.items():
        if module.in_features % BLOCK:
            raise UserError(f"quantize: {name} has in_features {module.in_features}, not a multiple of {BLOCK} (NVFP4 blocks); add it to exclude")
    all_linears = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    cal = ptq.calibrate(model, calib)
    # An engine runs a fused group (linears reading one input: q/k/v, gate/up) as one GEMM in one format, so `exclude`
    # takes all of a group or none of it; linears kept BF16 by rule (a MoE router beside its shared expert) are no
    # engine's fusion partners.
    by_rule = ptq.quantizable_linears(model)
    cal.fused = [g for g in ([n for n in group if n in by_rule] for group in cal.fused) if len(g) > 1]
    for group in cal.fused:
        kept = [n for n in group if n not in linears]
        if kept and len(kept) < len(group):
            raise UserError(f"quantize: {', '.join(kept)} stay BF16 but {', '.join(n for n in group if n in linears)} would not; "
                            "engines fuse them into one layer (they read the same input): exclude all of them or none")
    cal.fused = [g for g in cal.fused if g[0] in linears]
    base_ppl, base_ppl_stderr = perplexity(model, evalw)
    base_tasks = _score_tasks(model, tokenizer, task_sets, config)
    units = ptq.format_units(list(linears), cal.fused)
    sizes = {n: m.weight.numel() for n, m in linears.items()}
    kv_scales = {f"{n}.{n.rsplit('.', 1)[-1][0]}_scale": torch.tensor(a, dtype=torch.float32) / 448.0 if a > 0 else torch.tensor(1.0)
                 for n, a in cal.kv_amax.items()} if config.kv_cache_fp8 else {}

    staging = output / ".variants.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report: dict = {"bf16_perplexity": base_ppl, "bf16_perplexity_stderr": base_ppl_stderr, "calibration_windows": int(calib.shape[0]),
                    "eval_windows": int(evalw.shape[0]), "eval_split": config.eval_split, "seq_len": config.seq_len,
                    "excluded_patterns": list(exclude), "bf16_tasks": {k: _task_entry(v) for k, v in base_tasks.items()}, "variants": {}}
    metrics: dict[str, float] = {"bf16_perplexity": base_ppl, "bf16_perplexity_stderr": base_ppl_stderr}
    for name, score in base_tasks.items():
        metrics.update({f"bf16_{name}_accuracy": score.accuracy, f"bf16_{name}_accuracy_stderr": score.accuracy_stderr})
    failures: list[str] = []
    for variant in config.variants:
        if variant == "mixed":
            sens = ptq.sensitivities(model, calib[:8], units, cal, "nvfp4")  # a loss difference per unit: a few windows rank them
            formats = ptq.choose_formats(units, sizes, sens, config.bits_budget)
        else:
            formats = {n: variant for n in linears}
        if all(f == "bf16" for f in formats.values()):
            raise UserError(f"quantize: bits_budget {config.bits_budget} keeps every linear of the mixed variant in BF16; "
                            "lower it (NVFP4 is 4.5 bits per weight, FP8 8)")
        exported = ptq.export_tensors(linears, formats, cal)
        folder = staging / variant
        write_modelopt(model, folder, formats, exported, kv_scales, tokenizer_from=source)
        common = {"format": variant, "effective_bits": ptq.effective_bits(formats, sizes),
                  "kept_bf16": [n for n in all_linears if formats.get(n, "bf16") == "bf16"]}
        loaded = {variant: ("modelopt", load_modelopt(folder))}  # read back from the exported files
        if variant in ("fp8", "nvfp4") and config.compressed_tensors:
            ct = staging / f"{variant}-compressed-tensors"
            write_compressed_tensors(model, ct, formats, exported, tokenizer_from=source)
            # as a laptop user loads it: stock transformers, the config's dtype (BF16)
            loaded[ct.name] = ("compressed-tensors", AutoModelForCausalLM.from_pretrained(ct).eval())
        for key, (export, net) in loaded.items():
            entry, failed = _measure(key, net, evalw, tokenizer, task_sets, base_ppl, base_tasks, config, variant, ctx)
            report["variants"][key] = {**common, "export": export, **entry, **({"formats": formats} if export == "modelopt" else {})}
            prefix = key.replace("-", "_")
            metrics.update({f"{prefix}_perplexity": entry["perplexity"], f"{prefix}_ppl_increase": entry["relative_increase"],
                            f"{prefix}_effective_bits": common["effective_bits"]})
            for name, t in entry["tasks"].items():
                metrics.update({f"{prefix}_{name}_accuracy": t["accuracy"], f"{prefix}_{name}_accuracy_stderr": t["accuracy_stderr"],
                                f"{prefix}_{name}_accuracy_drop": t["accuracy_drop"]})
            failures += failed
    if failures:
        shutil.rmtree(staging, ignore_errors=True)
        raise GateError("quantize gate failed (raise max_ppl_increase / max_accuracy_drop, use preset 'nemotron' or more exclude "
                        "patterns): " + "; ".join(failures))
    for folder in sorted(staging.iterdir()):
        shutil.rmtree(output / folder.name, ignore_errors=True)
        folder.rename(output / folder.name)
    staging.rmdir()
    (output / "quantize.json").write_text(json.dumps(report, indent=2))
    return metrics


def perplexity(model, windows: torch.Tensor, batch_size: int = 8) -> tuple[float, float]:
    """Perplexity over token windows (N, T+1) and its standard error over windows: exp(mean NLL) and exp(mean) times
    the standard error of the windows' mean NLL, the estimate the evaluate stage reports, so a card can set the two
    side by side."""
    per_window = []
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size]
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits.float()
            nll = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="none").view(batch.shape[0], -1)
            per_window += nll.mean(dim=1).tolist()
    losses = torch.tensor(per_window, dtype=torch.float64)
    mean = float(losses.mean())
    stderr = float(losses.std() / math.sqrt(len(per_window))) if len(per_window) > 1 else 0.0
    return math.exp(mean), math.exp(mean) * stderr


def _task_sets(config: Config) -> dict[str, list]:
    """The cloze sets to score, by name: built-in `tasks`, then `task_files` (named by file stem)."""
    sets = {name: read_set(builtin_path(name)) for name in config.tasks}
    for file in config.task_files:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"quantize.task_files: {path} does not exist")
        sets[path.stem] = read_set(path)
    return sets


def _score_tasks(model, tokenizer, task_sets: dict[str, list], config: Config) -> dict:
    return {name: score_set(model, tokenizer, items, config.task_seq_len, 8, torch.device("cpu")) for name, items in task_sets.items()}


def _task_entry(score) -> dict[str, float]:
    return {"items": score.items, "accuracy": score.accuracy, "accuracy_stderr": score.accuracy_stderr}


def _measure(key: str, net, evalw, tokenizer, task_sets, base_ppl: float, base_tasks: dict, config: Config, variant: str,
             ctx: StepContext) -> tuple[dict, list[str]]:
    """Perplexity and task accuracy of one variant loaded from disk, against BF16; the report entry and gate failures."""
    ppl, ppl_stderr = perplexity(net, evalw)
    gap = ppl / base_ppl - 1
    gate = config.max_ppl_increase[variant]
    acc_gate = config.max_accuracy_drop.get(variant)
    tasks = {}
    failures = []
    if gap > gate:
        failures.append(f"{key}: perplexity {ppl:.4f} is {100 * gap:.2f}% above BF16's {base_ppl:.4f}, over its gate of {100 * gate:.2f}%")
    for name, score in _score_tasks(net, tokenizer, task_sets, config).items():
        base = base_tasks[name]
        # the drop is paired (the same items): its standard error is that of the per-item differences
        diffs = [float(b) - float(v) for b, v in zip(base.item_correct, score.item_correct)]
        mean = sum(diffs) / len(diffs)
        stderr = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) if len(diffs) > 1 else 0.0
        tasks[name] = {**_task_entry(score), "accuracy_drop": mean, "accuracy_drop_stderr": stderr}
        if acc_gate is not None and mean > acc_gate:
            failures.append(f"{key}: {name} accuracy {score.accuracy:.4f} is {mean:.4f} below BF16's {base.accuracy:.4f}, "
                            f"over its gate of {acc_gate:.4f}")
    passed = not failures
    ctx.log.info("variant_quantized", variant=key, perplexity=round(ppl, 4), relative_increase=round(gap, 5), gate=gate, passed=passed,
                 **{f"{n}_accuracy": round(t["accuracy"], 4) for n, t in tasks.items()})
    return {"perplexity": ppl, "perplexity_stderr": ppl_stderr, "relative_increase": gap, "gate": gate, "accuracy_gate": acc_gate, "passed": passed, "tasks": tasks}, failures
