"""Quantize benchmark: perplexity gaps of the exported FP8 / NVFP4 / mixed checkpoints (read back from disk)
against BF16, their sizes, and Model Optimizer side by side on the same model and calibration data.

Prints, per variant (ModelOpt exports and their compressed-tensors twins, each read back from disk): perplexity,
relative increase over BF16 and its gate, greedy cloze accuracy (standard error) and its paired drop against
BF16, effective bits per quantized weight, size of model.safetensors. Then, with nvidia-modelopt installed: (a) NVFP4 weight packing time of
`factory.stages.quantize.ptq.quantize_weight` against `NVFP4QTensor.quantize` on the same weights, with the number of
differing bytes; (b) perplexity of Model Optimizer's own FP8 fake quantization (`mtq.FP8_DEFAULT_CFG`, CPU)
next to this stage's FP8 export.

    .venv/bin/python bench/quantize.py                      # ~3-6 min on 2 busy cores
    .venv/bin/python bench/quantize.py --teacher-steps 300

The tiny corpus and model come from tests/stages/compress/tiny_models.py (the same inputs the tests use).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=150)
    args = parser.parse_args()

    import torch

    from factory.artifacts import Tokens

    from factory.model.checkpoints import lm_loss, load_model
    from factory.stages.quantize import stage
    from factory.stages.quantize.ptq import quantize_weight
    from factory.stage import StepContext
    from tests.stages.compress.tiny_models import teacher_artifact, tokens_artifact

    import json

    from tests.stages.compress.tiny_models import sentences

    root = Path(tempfile.mkdtemp(prefix="bench-quantize-"))
    tokens = tokens_artifact(root)
    model = teacher_artifact(root, tokens, steps=args.teacher_steps)
    # cloze items of the tiny corpus' grammar (held-out seed): " a" after the verb, or the noun after "a"
    cloze = root / "tiny_cloze.jsonl"
    cloze.write_text("".join(json.dumps({"id": f"c{i}", "context": " ".join(s.split()[:4 + i % 2]), "target": " " + s.split()[4 + i % 2]}) + "\n"
                             for i, s in enumerate(sentences(200, seed=13))))
    cfg = stage.Config(variants=["fp8", "nvfp4", "mixed"], calibration_samples=32, eval_samples=32, seq_len=32,
                       tasks=[], task_files=[str(cloze)], task_seq_len=32,
                       max_ppl_increase={"fp8": 1.0, "nvfp4": 1.0, "mixed": 1.0})  # report, do not gate
    t = time.perf_counter()
    m = stage.run(cfg, {"model": model, "tokens": tokens}, root / "q", StepContext("quantize"))
    seconds = time.perf_counter() - t
    bf16_bytes = sum(p.numel() * 2 for p in load_model(model.path / "model").parameters())
    print(f"\nBF16 perplexity {m['bf16_perplexity']:.4f}  (BF16 weights {bf16_bytes / 1024:.0f} KiB); quantize stage {seconds:.1f} s")
    report = json.loads((root / "q" / "quantize.json").read_text())
    base = report["bf16_tasks"]["tiny_cloze"]
    print(f"BF16 cloze accuracy {base['accuracy']:.4f} ± {base['accuracy_stderr']:.4f} ({base['items']} items)")
    print(f"{'variant':<26}{'perplexity':>11}{'increase':>10}{'gate':>7}{'cloze acc':>18}{'drop':>18}{'bits/weight':>13}{'file KiB':>10}")
    for v, r in report["variants"].items():
        size = (root / "q" / v / "model.safetensors").stat().st_size
        t = r["tasks"]["tiny_cloze"]
        print(f"{v:<26}{r['perplexity']:>11.4f}{100 * r['relative_increase']:>9.3f}%{100 * r['gate']:>6.0f}%"
              f"{t['accuracy']:>10.4f} ± {t['accuracy_stderr']:.4f}{t['accuracy_drop']:>10.4f} ± {t['accuracy_drop_stderr']:.4f}"
              f"{r['effective_bits']:>13.2f}{size / 1024:>10.0f}")

    try:
        from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
    except ImportError as err:
        print(f"\nModel Optimizer comparison skipped: {err}")
        return
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

        net = load_model(model.path / "model")
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        calib = Tokens.of({"tokens": tokens}, "tokens").windows("train", 32, 32)
        evalw = Tokens.of({"tokens": tokens}, "tokens").windows("valid", 32, 32)

        def forward_loop(mod):
            with torch.no_grad():
                for start in range(0, calib.shape[0], 8):
                    mod(input_ids=calib[start : start + 8, :-1], use_cache=False)

        mtq.quantize(net, mtq.FP8_DEFAULT_CFG, forward_loop)
        ppl = math.exp(lm_loss(net, evalw))
        print(f"FP8 perplexity: this stage's export {m['fp8_perplexity']:.4f}, Model Optimizer fake quant {ppl:.4f} "
              f"(+{100 * (ppl / m['bf16_perplexity'] - 1):.3f}%)")
    except Exception as err:  # Model Optimizer's CPU path varies by release; the figure above stands alone
        print(f"Model Optimizer FP8 fake quant skipped: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
