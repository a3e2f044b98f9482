"""Quantize benchmark: PTQ against QAD at equal tokens, the exported variants against BF16, and Model Optimizer side
by side.

Inputs, built through the factory's own stages: the smoke corpus (examples/data/smoke-html) curated and tokenized
(bench/precision.py's cached tokens) and a NemotronH teacher trained on it by the pretrain stage. Then:

1. PTQ: the quantize stage on the teacher (fp8, nvfp4, mixed and the compressed-tensors twins), every variant read
   back from its files: perplexity (standard error), gap to BF16, cloze accuracy (standard error) and its paired drop,
   bits per weight, file size.
2. PTQ against QAD at equal tokens: the teacher distilled into a copy of itself for `--steps` steps by the distill
   stage, once in FP32 (then PTQ to NVFP4) and once with its linears fake-quantized to NVFP4 (QAD: the export's 1 x 16
   weight blocks, every linear but lm_head), then exported by the quantize stage. Each NVFP4 model's perplexity gap to
   the BF16 teacher (paired standard error over the same windows) and cloze accuracy.
3. With nvidia-modelopt installed: NVFP4 weight packing time of `quantize_weight` against `NVFP4QTensor.quantize`
   with the number of differing bytes, and Model Optimizer's own FP8 fake quantization (CPU) next to the FP8 export.

    .venv/bin/python bench/quantize.py                       # ~2-4 min on 2 cores (135 s measured)
    .venv/bin/python bench/quantize.py --teacher-steps 300 --steps 100 --out runs/bench/quantize
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The teacher: the tiny preset as pattern M*-M*- (two attention layers, two Mamba groups), widths in multiples of 16.
TEACHER = {"preset": "tiny", "overrides": {"pattern": "M*-M*-", "intermediate_size": 128, "mamba_groups": 2,
                                           "max_position_embeddings": 512}}
SEQ_LEN, WINDOWS = 64, 64
# QAD: the export's own quantization while training (1 x 16 weight blocks; only lm_head, which no export quantizes, in BF16)
QAD = {"precision": "nvfp4", "precision_options": {"high_precision_layers": ["lm_head"], "nvfp4_weight_2d_blocks": False}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=150)
    parser.add_argument("--steps", type=int, default=60, help="Distillation steps of PTQ's baseline and of QAD (equal tokens).")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a new temporary one); the "
                                                                 "tokenized smoke corpus is cached in OUT/data")
    args = parser.parse_args()

    import torch
    from precision import smoke_tokens

    from factory.artifacts import Tokens
    from factory.stage import Artifact, StepContext
    from factory.stages import pretrain
    from factory.stages.distill import stage as distill
    from factory.stages.quantize import stage as quantize

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-quantize-"))
    for name in ("teacher", "ptq", "bf16-distilled", "bf16-distilled-ptq", "qad", "qad-export"):
        shutil.rmtree(root / name, ignore_errors=True)  # a rerun in the same folder starts over (data stays cached)
    tokens = smoke_tokens(root / "data")
    teach = pretrain.Config(model=TEACHER, steps=args.teacher_steps, seq_len=SEQ_LEN, micro_batch_size=8, lr=3e-3,
                            warmup_steps=10, checkpoint_interval=0, log_interval=max(1, args.teacher_steps // 10))
    pretrain.run(teach, {"tokens": tokens}, root / "teacher", StepContext("pretrain"))
    teacher = Artifact(root / "teacher", {"fingerprint": "bench-teacher"})
    common = {"calibration_samples": 32, "eval_samples": WINDOWS, "seq_len": SEQ_LEN, "task_seq_len": SEQ_LEN}

    # 1. PTQ of the teacher, every variant
    t = time.perf_counter()
    cfg = quantize.Config(variants=["fp8", "nvfp4", "mixed"], max_ppl_increase={"fp8": 1.0, "nvfp4": 1.0, "mixed": 1.0}, **common)
    quantize.run(cfg, {"model": teacher, "tokens": tokens}, root / "ptq", StepContext("quantize"))
    seconds = time.perf_counter() - t
    ptq = json.loads((root / "ptq" / "quantize.json").read_text())
    base = ptq["bf16_tasks"]["stdlib_cloze"]
    bf16_bytes = sum(p.stat().st_size for p in (root / "teacher" / "model").glob("*.safetensors")) // 2
    print(f"\nteacher: BF16 perplexity {_pm(ptq['bf16_perplexity'], ptq['bf16_perplexity_stderr'])} on {WINDOWS} windows of "
          f"{SEQ_LEN} tokens; stdlib_cloze accuracy {_pm(base['accuracy'], base['accuracy_stderr'])} ({base['items']} items); "
          f"BF16 weights {bf16_bytes / 1024:.0f} KiB; quantize stage {seconds:.1f} s")
    print(f"{'variant':<26}{'perplexity':>20}{'gap':>9}{'cloze acc':>18}{'drop (paired)':>20}{'bits/weight':>13}{'file KiB':>10}")
    for v, r in ptq["variants"].items():
        size = sum(p.stat().st_size for p in (root / "ptq" / v).glob("*.safetensors"))
        c = r["tasks"]["stdlib_cloze"]
        print(f"{v:<26}{_pm(r['perplexity'], r['perplexity_stderr']):>20}{100 * r['relative_increase']:>8.3f}%"
              f"{_pm(c['accuracy'], c['accuracy_stderr']):>18}{_pm(c['accuracy_drop'], c['accuracy_drop_stderr']):>20}"
              f"{r['effective_bits']:>13.2f}{size / 1024:>10.0f}")

    # 2. PTQ against QAD at equal tokens: the same distillation, in FP32 then PTQ, or quantization-aware
    loop = {"steps": args.steps, "seq_len": SEQ_LEN, "micro_batch_size": 8, "lr": 5e-4, "warmup_steps": 3, "checkpoint_interval": 0,
            "valid_samples": WINDOWS}
    rows = {"PTQ of the teacher (0 extra tokens)": (root / "ptq" / "nvfp4", ptq["variants"]["nvfp4"])}
    for name, recipe, out in (("PTQ after FP32 distillation", {}, "bf16-distilled"), ("QAD (NVFP4 distillation)", QAD, "qad")):
        t = time.perf_counter()
        distill.run(distill.Config(**loop, **recipe), {"student": teacher, "teacher": teacher, "tokens": tokens}, root / out,
                    StepContext("distill"))
        spent = time.perf_counter() - t
        qcfg = quantize.Config(variants=["nvfp4"], compressed_tensors=False, max_ppl_increase={"nvfp4": 1.0}, **common)
        quantize.run(qcfg, {"model": Artifact(root / out, {"fingerprint": out}), "tokens": tokens}, root / f"{out}-export",
                     StepContext("quantize"))
        report = json.loads((root / f"{out}-export" / "quantize.json").read_text())
        rows[f"{name}, {args.steps * 8 * SEQ_LEN} tokens ({spent:.0f} s)"] = (root / f"{out}-export" / "nvfp4", report["variants"]["nvfp4"])
    windows = Tokens.of({"tokens": tokens}, "tokens").windows("valid", SEQ_LEN, WINDOWS)
    teacher_losses = _window_losses(_bf16(root / "teacher" / "model"), windows)
    print(f"\nNVFP4 against the BF16 teacher ({_pm(ptq['bf16_perplexity'], ptq['bf16_perplexity_stderr'])}), same windows; "
          "gap's standard error paired over windows:")
    print(f"{'model':<52}{'NVFP4 perplexity':>20}{'gap to teacher':>22}{'cloze acc':>18}")
    from factory.stages.quantize.modelopt_format import load_modelopt

    for name, (folder, r) in rows.items():
        diffs = _window_losses(load_modelopt(folder), windows) - teacher_losses
        gap = math.exp(float(diffs.mean())) - 1
        gap_se = math.exp(float(diffs.mean())) * float(diffs.std()) / math.sqrt(len(diffs))
        c = r["tasks"]["stdlib_cloze"]
        print(f"{name:<52}{_pm(r['perplexity'], r['perplexity_stderr']):>20}{f'{100 * gap:+.3f}% ± {100 * gap_se:.3f}%':>22}"
              f"{_pm(c['accuracy'], c['accuracy_stderr']):>18}")

    _model_optimizer(root, teacher, tokens, ptq, torch)


def _bf16(folder: Path):
    """The model in `folder` with its weights rounded through BF16 (the quantize stage's reference)."""
    import torch

    from factory.model.checkpoints import load_model

    model = load_model(folder)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def _window_losses(model, windows, batch_size: int = 8):
    """Mean next-token NLL of each window (N, T+1), float64 [N]."""
    import torch
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size]
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits.float()
            out.append(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="none").view(batch.shape[0], -1).mean(1))
    return torch.cat(out).double()


def _model_optimizer(root: Path, teacher, tokens, ptq: dict, torch) -> None:
    try:
        from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
    except ImportError as err:
        print(f"\nModel Optimizer comparison skipped: {err}")
        return
    from factory.artifacts import Tokens
    from factory.stages.quantize.ptq import quantize_weight

    w = torch.randn(4096, 4096) * torch.logspace(-6, 1, 4096)
    t = time.perf_counter()
    ours = quantize_weight(w, "nvfp4")
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    ref, ref_scale, _ = NVFP4QTensor.quantize(w.clone(), 16)
    ref_s = time.perf_counter() - t
    diff = int((ours["weight"] != ref._quantized_data).sum()) + int((ours["weight_scale"].view(torch.uint8) != ref_scale.view(torch.uint8)).sum())
    print(f"\nNVFP4 packing of a 4096x4096 weight (values 1e-6..10): factory {ours_s * 1e3:.0f} ms, "
          f"Model Optimizer {ref_s * 1e3:.0f} ms, differing bytes {diff}")
    try:
        import modelopt.torch.quantization as mtq

        net = _bf16(teacher.path / "model")
        calib = Tokens.of({"tokens": tokens}, "tokens").windows("train", SEQ_LEN, 32)
        evalw = Tokens.of({"tokens": tokens}, "tokens").windows("valid", SEQ_LEN, WINDOWS)

        def forward_loop(mod):
            with torch.no_grad():
                for start in range(0, calib.shape[0], 8):
                    mod(input_ids=calib[start : start + 8, :-1], use_cache=False)

        mtq.quantize(net, mtq.FP8_DEFAULT_CFG, forward_loop)
        ppl = math.exp(float(_window_losses(net, evalw).mean()))
        print(f"FP8 perplexity: this stage's export {ptq['variants']['fp8']['perplexity']:.4f}, Model Optimizer fake quant "
              f"{ppl:.4f} (+{100 * (ppl / ptq['bf16_perplexity'] - 1):.3f}%)")
    except Exception as err:  # noqa: BLE001 -- Model Optimizer's CPU path varies by release; the figures above stand alone
        print(f"Model Optimizer FP8 fake quant skipped: {type(err).__name__}: {err}")


def _pm(value: float, stderr: float) -> str:
    return f"{value:.4f} ± {stderr:.4f}"


if __name__ == "__main__":
    main()
