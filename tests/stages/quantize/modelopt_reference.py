"""NVIDIA Model Optimizer's own export of a model, the reference the quantize stage's ModelOpt folders are diffed
against, and the diff of two exported folders (every file, every config field, every tensor's name, dtype, shape and
bytes).

    ref = modelopt_export(model_dir, windows, formats, kv_fp8=True, out=tmp / "ref")   # formats: linear -> fp8|nvfp4|bf16
    assert folder_diff(ours, ref) == []

Model Optimizer 0.47 runs this whole path on CPU: `mtq.quantize` with the max calibrator (its quantizers only collect
amax while calibrating, so no CUDA fake-quant kernel runs) and `export_hf_checkpoint`. The model is the stage's
reference: the checkpoint's weights rounded through BF16, calibrated in FP32 on the same windows in the same batches,
then its parameters cast to BF16 (a BF16 model, as Model Optimizer's users export one) before the export.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import safe_open

# Files both exports hold; the stage also copies the tokenizer, which Model Optimizer's export_hf_checkpoint does not
# write (its examples save the tokenizer separately).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
                   "merges.txt", "tokenizer.model")
# Model Optimizer 0.47 maps exclude_modules through transformers' reverse weight renaming with a sentinel path segment
# ".\x00modelopt_name_sentinel"; NemotronH's renaming "model." -> "backbone." also matches inside the sentinel, which
# comes back as this suffix on every excluded name. The names without it are what the renaming means.
SENTINEL_DEFECT = ".\x00backbone.pt_name_sentinel"


def modelopt_export(model_dir: Path, windows: torch.Tensor, formats: dict[str, str], kv_fp8: bool, out: Path,
                    batch_size: int = 8) -> Path:
    """Model Optimizer's export of the model in `model_dir`, quantized per linear as `formats` says (module name ->
    "fp8" | "nvfp4" | "bf16"; linears not named stay BF16), calibrated on `windows` (N, T+1), into `out`."""
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export import export_hf_checkpoint
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    preset = {"fp8": mtq.FP8_DEFAULT_CFG, "nvfp4": mtq.NVFP4_DEFAULT_CFG}
    entries = [{"quantizer_name": "*", "enable": False}]
    for name, fmt in formats.items():
        if fmt == "bf16":
            continue
        for entry in preset[fmt]["quant_cfg"]:
            if entry["quantizer_name"] in ("*weight_quantizer", "*input_quantizer"):
                entries.append({"quantizer_name": name + "." + entry["quantizer_name"][1:], "cfg": copy.deepcopy(entry["cfg"])})
    if kv_fp8:
        entries += copy.deepcopy(mtq.FP8_KV_CFG["quant_cfg"])

    def forward_loop(m):
        with torch.no_grad():
            for start in range(0, windows.shape[0], batch_size):
                m(input_ids=windows[start : start + batch_size, :-1], use_cache=False)

    mtq.quantize(model, {"quant_cfg": entries, "algorithm": "max"}, forward_loop)
    for p in model.parameters():  # a BF16 model; the quantizers' amax buffers stay FP32
        p.data = p.data.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    export_hf_checkpoint(model, dtype=torch.bfloat16, export_dir=out)
    for name in ("hf_quant_config.json", "config.json"):
        path = Path(out) / name
        path.write_text(path.read_text().replace(json.dumps(SENTINEL_DEFECT)[1:-1], ""))
    return Path(out)


def folder_diff(ours: Path, reference: Path) -> list[str]:
    """Every difference between two exported folders, one line each: files present in one only, JSON files field by
    field (parsed: key order and indentation aside), safetensors metadata, tensor names, dtypes, shapes and bytes."""
    ours, reference = Path(ours), Path(reference)
    files = {p.name for p in ours.iterdir() if p.name not in TOKENIZER_FILES}
    ref_files = {p.name for p in reference.iterdir()}
    out = [f"file {n}: only in ours" for n in sorted(files - ref_files)] + [f"file {n}: only in the reference"
                                                                            for n in sorted(ref_files - files)]
    for name in sorted(files & ref_files):
        if name.endswith(".json"):
            out += _json_diff(json.loads((ours / name).read_text()), json.loads((reference / name).read_text()), name)
        elif name.endswith(".safetensors"):
            out += _tensor_diff(ours / name, reference / name)
        elif (ours / name).read_bytes() != (reference / name).read_bytes():
            out.append(f"file {name}: bytes differ")
    return out


def _json_diff(a, b, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{where}.{key}: only in ours ({a[key]!r})")
            elif key not in a:
                out.append(f"{where}.{key}: only in the reference ({b[key]!r})")
            else:
                out += _json_diff(a[key], b[key], f"{where}.{key}")
        return out
    return [] if a == b else [f"{where}: ours {a!r}, reference {b!r}"]


def _tensor_diff(a: Path, b: Path) -> list[str]:
    out = []
    with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
        if fa.metadata() != fb.metadata():
            out.append(f"{a.name} metadata: ours {fa.metadata()}, reference {fb.metadata()}")
        ka, kb = set(fa.keys()), set(fb.keys())
        out += [f"tensor {k}: only in ours" for k in sorted(ka - kb)] + [f"tensor {k}: only in the reference" for k in sorted(kb - ka)]
        for key in sorted(ka & kb):
            x, y = fa.get_tensor(key), fb.get_tensor(key)
            if (x.dtype, tuple(x.shape)) != (y.dtype, tuple(y.shape)):
                out.append(f"tensor {key}: ours {x.dtype} {tuple(x.shape)}, reference {y.dtype} {tuple(y.shape)}")
                continue
            xb, yb = x.reshape(-1).contiguous().view(torch.uint8), y.reshape(-1).contiguous().view(torch.uint8)
            if not torch.equal(xb, yb):
                out.append(f"tensor {key}: {int((xb != yb).sum())} of {xb.numel()} bytes differ")
    return out
