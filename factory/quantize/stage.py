"""The quantize stage: PTQ of a NemotronH checkpoint to FP8, NVFP4 and sensitivity-based mixed precision,
exported in Model Optimizer's Hugging Face format and gated on perplexity read back from the exported files.

Inputs: "model" (an artifact with `model/`) and "tokens" (calibration windows from `calibration_split`,
perplexity windows from `eval_split`). Output, one folder per variant plus a report:

    fp8/  nvfp4/  mixed/     ModelOpt HF checkpoints (hf_quant_config.json, config.json, model.safetensors)
    fp8-compressed-tensors/  the FP8 variant as a compressed-tensors checkpoint (stock transformers loads it on CPU)
    quantize.json            per variant: formats per linear, effective bits, perplexity of BF16 and of
                             the variant as loaded back from disk, the relative gap, and its gate

A variant whose perplexity gap exceeds its gate (1% FP8, 3% NVFP4 and mixed by default) fails the step with one
message naming the variant, its gap and the gate; variants are written into a temporary folder and moved
into place only when every gate passed.

    from factory.quantize import stage
    stage.run(stage.Config(), {"model": ckpt, "tokens": toks}, out, StepContext("quantize"))
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from factory.errors import UserError
from factory.stage import Artifact, StageConfig, StepContext

__all__ = ["Config", "GateError", "KIND", "run"]

KIND = "quantized"
Variant = Literal["fp8", "nvfp4", "mixed"]


class GateError(UserError):
    """A quantized variant lost more perplexity than its gate allows."""


class Config(StageConfig):
    """PTQ variants, exclusions, calibration and gates."""

    variants: list[Variant] = Field(["fp8", "nvfp4"], min_length=1, description="Variants to export: fp8, nvfp4, mixed.")
    kv_cache_fp8: bool = Field(True, description="Calibrate FP8 KV-cache scales (k_scale, v_scale) for attention layers.")
    exclude: list[str] = Field([], description="fnmatch patterns of linear names kept in BF16 (besides lm_head, routers, conv1d).")
    preset: Literal["none", "nemotron"] = Field(
        "none", description="'nemotron': also keep the attention layers and the Mamba layers that feed them in BF16, "
        "as NVIDIA's Nemotron-H FP8/NVFP4 checkpoints do.")
    compressed_tensors: bool = Field(True, description="Also export the fp8 variant as a compressed-tensors checkpoint (fp8-compressed-tensors/).")
    bits_budget: float = Field(6.0, ge=4.5, le=16, description="Effective bits per quantizable weight for the mixed variant.")
    calibration_split: str = Field("train", description="Prefix of the tokens input's indexed dataset used to calibrate.")
    calibration_samples: int = Field(32, gt=0, description="Calibration windows; fewer available is an error.")
    eval_split: str = Field("valid", description="Prefix of the tokens input's indexed dataset for the perplexity gates.")
    eval_samples: int = Field(32, gt=0, description="Perplexity windows (at most).")
    seq_len: int = Field(64, gt=0, description="Tokens per window.")
    max_ppl_increase: dict[str, float] = Field(
        {"fp8": 0.01, "nvfp4": 0.03, "mixed": 0.03},
        description="Gate per variant: largest allowed relative perplexity increase over BF16 (0.01 = 1%).")

    @model_validator(mode="after")
    def _gates(self) -> Config:
        missing = [v for v in self.variants if v not in self.max_ppl_increase]
        if missing:
            raise ValueError(f"max_ppl_increase has no gate for variants {missing}")
        return self


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
    import torch

    from factory.artifacts import Checkpoint, Tokens
    from factory.model.checkpoints import check_calibration, lm_loss, load_model
    from factory.quantize import ptq
    from factory.quantize.modelopt_format import load_modelopt, write_modelopt

    output = Path(output)
    source = Checkpoint.of(inputs, "model").model_dir
    tokens = Tokens.of(inputs, "tokens")
    calib = tokens.windows(config.calibration_split, config.seq_len, config.calibration_samples)
    check_calibration(calib, config.calibration_samples, f"tokens/{config.calibration_split}")
    evalw = tokens.windows(config.eval_split, config.seq_len, config.eval_samples)
    check_calibration(evalw, 1, f"tokens/{config.eval_split}")
    model = load_model(source)
    with torch.no_grad():  # the reference is the BF16 model: round every weight through BF16 once
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    exclude = tuple(config.exclude) + (tuple(nemotron_exclusions(list(model.config.layers_block_type))) if config.preset == "nemotron" else ())
    linears = ptq.quantizable_linears(model, exclude)
    if not linears:
        raise UserError("quantize: every linear is excluded (exclude / preset); nothing to quantize")
    for name, module in linears.items():
        if module.in_features % 16:
            raise UserError(f"quantize: {name} has in_features {module.in_features}, not a multiple of 16 (NVFP4 blocks); add it to exclude")
    cal = ptq.calibrate(model, calib)
    base_ppl = math.exp(lm_loss(model, evalw))
    units = ptq.format_units(list(linears))
    sizes = {n: m.weight.numel() for n, m in linears.items()}
    kv_scales = {f"{n}.{n.rsplit('.', 1)[-1][0]}_scale": torch.tensor(a / 448.0 if a > 0 else 1.0)
                 for n, a in cal.kv_amax.items()} if config.kv_cache_fp8 else {}

    staging = output / ".variants.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report: dict = {"bf16_perplexity": base_ppl, "calibration_windows": int(calib.shape[0]), "eval_windows": int(evalw.shape[0]),
                    "excluded_patterns": list(exclude), "variants": {}}
    metrics: dict[str, float] = {"bf16_perplexity": base_ppl}
    failures = []
    for variant in config.variants:
        if variant == "mixed":
            sens = ptq.sensitivities(model, calib[:8], units, cal, "nvfp4")  # a loss difference per unit: a few windows rank them
            formats = ptq.choose_formats(units, sizes, sens, config.bits_budget)
        else:
            formats = {n: variant for n in linears}
        exported = {n: {**ptq.quantize_weight(linears[n].weight.detach(), f), "input_scale": ptq.input_scale(cal.input_amax.get(n, 0.0), f)}
                    for n, f in formats.items() if f != "bf16"}
        folder = staging / variant
        write_modelopt(model, folder, formats, exported, kv_scales, tokenizer_from=source)
        if variant == "fp8" and config.compressed_tensors:
            from factory.quantize.compressed_tensors_format import write_compressed_tensors_fp8

            write_compressed_tensors_fp8(model, staging / "fp8-compressed-tensors", formats, exported, tokenizer_from=source)
        ppl = math.exp(lm_loss(load_modelopt(folder), evalw))  # read back from the exported files
        gap = ppl / base_ppl - 1
        gate = config.max_ppl_increase[variant]
        report["variants"][variant] = {"perplexity": ppl, "relative_increase": gap, "gate": gate, "passed": gap <= gate,
                                       "effective_bits": ptq.effective_bits(formats, sizes), "formats": formats}
        metrics.update({f"{variant}_perplexity": ppl, f"{variant}_ppl_increase": gap,
                        f"{variant}_effective_bits": ptq.effective_bits(formats, sizes)})
        ctx.log.info("variant_quantized", variant=variant, perplexity=round(ppl, 4), relative_increase=round(gap, 5), gate=gate)
        if gap > gate:
            failures.append(f"{variant}: perplexity {ppl:.4f} is {100 * gap:.2f}% above BF16's {base_ppl:.4f}, over its gate of {100 * gate:.2f}%")
    if failures:
        shutil.rmtree(staging, ignore_errors=True)
        raise GateError("quantize gate failed (raise max_ppl_increase, use preset 'nemotron' or more exclude patterns): " + "; ".join(failures))
    for folder in sorted(staging.iterdir()):
        shutil.rmtree(output / folder.name, ignore_errors=True)
        folder.rename(output / folder.name)
    staging.rmdir()
    (output / "quantize.json").write_text(json.dumps(report, indent=2))
    ctx.log_metrics(metrics)
    return metrics
