"""Training throughput benchmark: tokens per second of the pretrain trainer, side by side.

CPU: the tiny preset and the ~20M-parameter `small_20m` preset (at the smoke corpus's 2048-token
vocabulary, so ~10M parameters), FP32 and BF16 autocast. GPU (when one is there): `small_20m` in BF16
versus FP8 (`torch._scaled_mm` where the GPU has FP8 tensor cores, exact emulation otherwise). The
figure is the median tokens/s over the steps after the first `--warmup` ones (one process, no
checkpoints).

    .venv/bin/python bench/train.py                          # ~3 min on 2 CPU cores
    .venv/bin/python bench/train.py --steps 30 --out runs/bench/train --tracking-uri sqlite:///runs/bench/mlflow.db
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision import smoke_tokens  # noqa: E402  (bench/precision.py: the cached smoke tokens artifact)

from factory.stage import StepContext  # noqa: E402
from factory.stages import pretrain
from factory.train import read_metrics  # noqa: E402


# GPU only: Nemotron-H 8B's layer widths (hidden 4096, MLP 21504) in 4 layers, so the GEMMs are the
# sizes FP8 is for while the run fits one GPU with fp32 master weights and Adam state.
WIDE = {"preset": "nemotron_h_8b", "overrides": {"pattern": "M-*-"}}


def measure(tokens, out: Path, preset: str, precision: str, steps: int, warmup: int, seq_len: int, batch: int,
            compile: bool = False) -> dict:
    model = WIDE if preset == "wide" else {"preset": preset}
    config = pretrain.Config(model=model, precision=precision, steps=steps, seq_len=seq_len, compile=compile,
                             micro_batch_size=batch, warmup_steps=1, checkpoint_interval=0, log_interval=steps)
    folder = out / f"{preset}-{precision}"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    result = pretrain.run(config, {"tokens": tokens}, folder, StepContext(f"{preset}-{precision}"))
    rates = [r["tokens_per_s"] for r in read_metrics(folder / "metrics.jsonl")][warmup:]
    return {"preset": preset, "precision": precision, "seq_len": seq_len, "params": int(result["params"]),
            "tokens_per_s": statistics.median(rates), "final_loss": result["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the median")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train"))
    parser.add_argument("--compile", action="store_true", help="torch.compile each block (pretrain `compile: true`)")
    parser.add_argument("--gpu-seq-len", type=int, default=1024, help="sequence length of the GPU 'wide' runs")
    parser.add_argument("--tracking-uri", default=None, help="log the figures to MLflow here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = smoke_tokens(Path("runs/bench/precision/data") if args.out == Path("runs/bench/train") else args.out / "data")

    rows = []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plans = [("tiny", "fp32"), ("tiny", "bf16"), ("small_20m", "fp32"), ("small_20m", "bf16")]
    if device == "cuda":
        plans = [("small_20m", "bf16"), ("small_20m", "fp8"), ("wide", "bf16"), ("wide", "fp8")]
    for preset, precision in plans:
        seq_len = args.gpu_seq_len if preset == "wide" else args.seq_len
        row = measure(tokens, args.out, preset, precision, args.steps, args.warmup, seq_len, args.micro_batch_size, args.compile)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} threads"
    print(f"\n{name}; {args.micro_batch_size} sequences per step, {'compiled' if args.compile else 'eager'}, "
          f"median over steps {args.warmup + 1}..{args.steps}")
    print(f"{'preset':>10} {'precision':>9} {'seq_len':>7} {'params':>13} {'tokens/s':>10}")
    for r in rows:
        print(f"{r['preset']:>10} {r['precision']:>9} {r['seq_len']:>7} {r['params']:>13,} {r['tokens_per_s']:10.0f}")
    if device == "cuda":
        for preset in ("small_20m", "wide"):
            bf16, fp8 = (next(r["tokens_per_s"] for r in rows if r["preset"] == preset and r["precision"] == p) for p in ("bf16", "fp8"))
            print(f"{preset} FP8 / BF16 throughput: {fp8 / bf16:.2f}x")
    (args.out / "throughput.json").write_text(json.dumps(rows, indent=2) + "\n")
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
        mlflow.set_experiment("bench-train")
        with mlflow.start_run(run_name=f"throughput-{device}"):
            mlflow.log_metrics({f"{r['preset']}_{r['precision']}_tokens_per_s": r["tokens_per_s"] for r in rows})


if __name__ == "__main__":
    main()
