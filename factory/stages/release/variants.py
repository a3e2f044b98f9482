"""The quantized variants of a release: one loadable subfolder per variant of the quantize stage's artifact, laid
out as the Hub holds them (`fp8/`, `nvfp4/`, `mixed/`, `fp8-compressed-tensors/`, `nvfp4-compressed-tensors/`),
and one model-card section per variant.

Each subfolder holds the variant's config.json (its `quantization_config` kept, special-token ids from the
released tokenizer), weights, hf_quant_config.json for the Model Optimizer ones, the release's tokenizer files and
generation_config.json: `from_pretrained(REPO, subfolder="fp8-compressed-tensors")` loads it. The card section
gives the format, what stayed in BF16, the size on disk, perplexity and task accuracy against BF16 with the gap
and standard errors (as the quantize stage measured them on the files it exported), the gate it passed, and how
to load it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from factory.errors import InputError
from factory.stage import Artifact
from factory.stages.release.config import Config
from factory.stages.release.folder import (
    copy_tokenizer,
    write_generation_config,
    write_model_config,
)
from factory.tasks.table import format_metric

__all__ = ["check_variants_match", "copy_variants", "loads_in", "variant_sections"]

FORMAT_TEXT = {
    "fp8": "FP8 E4M3 weights with one FP32 scale per tensor; inputs quantized to FP8 with calibrated static per-tensor scales",
    "nvfp4": "NVFP4: E2M1 weights in blocks of 16 with an E4M3 scale per block and an FP32 global scale; inputs quantized "
             "to NVFP4 with per-block scales computed at run time and a calibrated global scale",
    "mixed": "per-linear NVFP4, FP8 or BF16, chosen by each linear's calibration-loss sensitivity under an effective-bits budget",
}
EXPORT_TEXT = {
    "modelopt": "NVIDIA Model Optimizer's Hugging Face format (hf_quant_config.json), which vLLM and TensorRT-LLM load "
                "(byte for byte what Model Optimizer's own export writes)",
    "compressed-tensors": "compressed-tensors, which stock transformers loads on CPU",
}
RULE_BF16 = "embeddings, Mamba conv1d, MoE routers, norms and every other tensor outside a linear layer"
EXPORT_NAME = {"modelopt": "Model Optimizer format", "compressed-tensors": "compressed-tensors"}


def check_variants_match(model_art: Artifact, quantized_art: Artifact) -> None:
    """The quantized artifact must be made from the released model: its "model" input has the model's fingerprint."""
    source = ((quantized_art.manifest.get("inputs") or {}).get("model") or {}).get("fingerprint")
    model_fp = model_art.manifest.get("fingerprint")
    if source and model_fp and source != model_fp:
        raise InputError(f"input 'quantized' ({quantized_art.path}) was quantized from model {source[:16]}, not the released "
                         f"model {model_fp[:16]}; wire the quantize step's model input to the same step as release's model")


def copy_variants(quantized_dir: Path, report: dict[str, Any], output: Path, tokens_dir: Path, config: Config) -> dict[str, int]:
    """Copy each variant folder of `report` into `output/<variant>/` with the release's tokenizer, special ids,
    generation defaults and a README.md of its own; return each variant's weight bytes."""
    sizes = {}
    for name, v in report["variants"].items():
        target = output / name
        if target.exists():
            raise InputError(f"quantized variant {name!r} collides with {target.name} of the released folder")
        shutil.copytree(quantized_dir / name, target, ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json", "chat_template.jinja"))
        tokenizer = copy_tokenizer(tokens_dir, target)
        write_model_config(target, target, tokenizer)
        write_generation_config(target, tokenizer, config)
        sizes[name] = sum(p.stat().st_size for p in target.glob("*.safetensors"))
        (target / "README.md").write_text("\n".join(_folder_card(name, v, report, config)) + "\n")
    return sizes


def loads_in(v: dict[str, Any]) -> str:
    """Where a variant runs, as the card's tables say it: stock transformers loads the compressed-tensors exports
    correctly; it has no ModelOpt quantizer, so it refuses a ModelOpt folder holding NVFP4 weights (their packed
    shapes do not fit its layers) and loads one holding only FP8 and BF16 silently, the FP8 codes cast without
    their scales: garbage."""
    if v["export"] == "compressed-tensors":
        return "transformers (CPU), vLLM"
    if "nvfp4" in set((v.get("formats") or {}).values()) | {v["format"]}:
        return "vLLM / TensorRT-LLM only — transformers refuses it"
    return "vLLM / TensorRT-LLM only — transformers loads it without scales"


def _basis(report: dict[str, Any]) -> str:
    windows, seq_len, split = report.get("eval_windows"), report.get("seq_len"), report.get("eval_split", "valid")
    where = f"{windows} windows of {seq_len} tokens of the `{split}` split" if windows and seq_len else "its held-out windows"
    return (f"Perplexities in this section were measured by the quantize step on {where}, each variant as loaded back from "
            "its exported files; BF16 is this release's root model measured again on those same windows, "
            f"{_pm(report['bf16_perplexity'], report.get('bf16_perplexity_stderr'))}. It differs from the Evaluation "
            "section's perplexity, which the evaluate step measured on its own windows (and with FP32 weights).")


def variant_sections(report: dict[str, Any], sizes: dict[str, int], bf16_bytes: int, config: Config) -> list[str]:
    """The card's "Quantized variants" section: a table of every variant, then one subsection per variant."""
    base = report.get("bf16_tasks") or {}
    lines = [
        "## Quantized variants",
        "",
        "Each variant is a subfolder that loads on its own. " + _basis(report) + " Task accuracy is greedy-target cloze "
        "accuracy on the same items for every model, with its standard error; the drop's standard error is paired, over "
        "the same items. Sizes are against the BF16 weights at the root of this release "
        f"({_mib(bf16_bytes)}).",
        "",
        "| variant | format | export | loads in | size on disk | perplexity | gap to BF16 | gate |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| `{name}/` | {v['format']} | {v['export']} | {loads_in(v)} | {_mib(sizes[name])} | "
          f"{_pm(v['perplexity'], v.get('perplexity_stderr'))} | {_pct(v['relative_increase'])} | "
          f"{'passed' if v.get('passed', True) else 'FAILED'} |" for name, v in report["variants"].items()],
        "",
    ]
    for name, v in report["variants"].items():
        kept = v.get("kept_bf16") or []
        lines += [
            f"### `{name}/`: {v['format'].upper()}, {EXPORT_NAME.get(v['export'], v['export'])}",
            "",
            f"- Loads in: {loads_in(v)}.",
            f"- Format: {FORMAT_TEXT.get(v['format'], v['format'])}; exported as {EXPORT_TEXT.get(v['export'], v['export'])}.",
            f"- Kept in BF16: {RULE_BF16}"
            + (f"; linear layers ({len(kept)}): {', '.join(f'`{n}`' for n in kept[:8])}{' ...' if len(kept) > 8 else ''}." if kept else "."),
            (f"- Size on disk: {_mib(sizes[name])} of weights, {bf16_bytes / max(sizes[name], 1):.2f}x smaller than the BF16 "
            f"weights at the root ({_mib(bf16_bytes)}); {format_metric(v['effective_bits'])} bits per quantized weight."),
            f"- Gate: perplexity at most {100 * v['gate']:.2f}% above BF16's"
            + (f", task accuracy at most {format_metric(v['accuracy_gate'])} below BF16's on every set" if v.get("accuracy_gate") is not None else "")
            + f": {'passed' if v.get('passed', True) else 'FAILED'}.",
            "",
            "| metric | BF16 | this variant | gap |",
            "|---|---|---|---|",
            (f"| perplexity (quantize step's windows) | {_pm(report['bf16_perplexity'], report.get('bf16_perplexity_stderr'))} | "
            f"{_pm(v['perplexity'], v.get('perplexity_stderr'))} | {_pct(v['relative_increase'])} |"),
            *[f"| {task} accuracy | {_pm(base[task]['accuracy'], base[task]['accuracy_stderr']) if task in base else '-'} | "
              f"{_pm(t['accuracy'], t['accuracy_stderr'])} | {_pm(0.0 - t['accuracy_drop'], t['accuracy_drop_stderr'])} |"
              for task, t in (v.get("tasks") or {}).items()],
            "",
            *_how_to_load(name, v, config),
            "",
        ]
    return lines


def _folder_card(name: str, v: dict[str, Any], report: dict[str, Any], config: Config) -> list[str]:
    """A variant folder's own README.md: what it is, where it loads, its numbers, how to load it."""
    return [
        f"# {config.model_name}: `{name}/` ({v['format'].upper()}, {EXPORT_NAME.get(v['export'], v['export'])})",
        "",
        f"**Loads in: {loads_in(v)}.**",
        "",
        f"{FORMAT_TEXT.get(v['format'], v['format'])}; exported as {EXPORT_TEXT.get(v['export'], v['export'])}.",
        "",
        (f"Perplexity {_pm(v['perplexity'], v.get('perplexity_stderr'))} against BF16's "
        f"{_pm(report['bf16_perplexity'], report.get('bf16_perplexity_stderr'))} ({_pct(v['relative_increase'])}), on the "
        "quantize step's windows; see the release's README.md for the task accuracies and how they were measured."),
        "",
        *_how_to_load(name, v, config),
    ]


def _how_to_load(name: str, v: dict[str, Any], config: Config) -> list[str]:
    export, fmt = v["export"], v["format"]
    where = f'"{config.repo_id}", subfolder="{name}"' if config.repo_id else f'"PATH_TO_THIS_FOLDER/{name}"'
    if export == "compressed-tensors":
        note = ("# NVFP4 weights decompress to BF16: keep the default dtype (dtype=torch.float32 fails in compressed-tensors 0.20)"
                if fmt == "nvfp4" else "# runs on CPU; the FP8 weights are dequantized on load")
        return [
            "Load it with stock transformers (`pip install transformers compressed-tensors`):",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"tokenizer = AutoTokenizer.from_pretrained({where})",
            f"model = AutoModelForCausalLM.from_pretrained({where})  {note}",
            'inputs = tokenizer("The history of the city", return_tensors="pt")',
            "out = model.generate(**inputs, max_new_tokens=32)",
            "print(tokenizer.decode(out[0], skip_special_tokens=True))",
            "```",
        ]
    local = f"./{name}"
    fetch = ([f'huggingface-cli download {config.repo_id} --include "{name}/*" --local-dir .'] if config.repo_id else [])
    twin = f"`{fmt}-compressed-tensors/`" if fmt in ("fp8", "nvfp4") else "a compressed-tensors variant"
    warning = ("Stock transformers has no Model Optimizer quantizer: it loads this folder without error but casts the FP8 "
               "codes to BF16 without their scales, and the model it returns produces garbage. "
               if "without scales" in loads_in(v) else
               "Stock transformers has no Model Optimizer quantizer and refuses this folder (the packed NVFP4 weights do not "
               "fit its layers). ")
    return [
        "Serve it with vLLM or TensorRT-LLM on a GPU (they read `quantization_config` in config.json and "
        "`hf_quant_config.json`; NVFP4 needs a Blackwell GPU). " + warning + f"For transformers, use {twin}.",
        "",
        "```bash",
        *fetch,
        f"vllm serve {local}            # quantization=modelopt is read from config.json",
        f"trtllm-serve {local}          # TensorRT-LLM's LLM API loads the same folder",
        "```",
    ]


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


def _pm(value: float, stderr: float | None) -> str:
    return f"{format_metric(value)} ± {format_metric(stderr)}" if stderr is not None else format_metric(value)
