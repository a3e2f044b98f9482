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
from factory.train import pretrain, read_metrics  # noqa: E402


def measure(tokens, out: Path, preset: str, precision: str, steps: int, warmup: int, seq_len: int, batch: int) -> dict:
    config = pretrain.Config(model={"preset": preset}, precision=precision, steps=steps, seq_len=seq_len,
                             micro_batch_size=batch, warmup_steps=1, checkpoint_interval=0, log_interval=steps)
    folder = out / f"{preset}-{precision}"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    result = pretrain.run(config, {"tokens": tokens}, folder, StepContext(f"{preset}-{precision}"))
    rates = [r["tokens_per_s"] for r in read_metrics(folder / "metrics.jsonl")][warmup:]
    return {"preset": preset, "precision": precision, "params": int(result["params"]),
            "tokens_per_s": statistics.median(rates), "final_loss": result["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the median")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train"))
    parser.add_argument("--tracking-uri", default=None, help="log the figures to MLflow here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = smoke_tokens(Path("runs/bench/precision/data") if args.out == Path("runs/bench/train") else args.out / "data")

    rows = []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plans = [("tiny", "fp32"), ("tiny", "bf16"), ("small_20m", "fp32"), ("small_20m", "bf16")]
    if device == "cuda":
        plans = [("tiny", "bf16"), ("small_20m", "bf16"), ("small_20m", "fp8")]
    for preset, precision in plans:
        row = measure(tokens, args.out, preset, precision, args.steps, args.warmup, args.seq_len, args.micro_batch_size)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} threads"
    print(f"\n{name}; {args.micro_batch_size} x {args.seq_len} tokens per step, median over steps {args.warmup + 1}..{args.steps}")
    print(f"{'preset':>10} {'precision':>9} {'params':>11} {'tokens/s':>10}")
    for r in rows:
        print(f"{r['preset']:>10} {r['precision']:>9} {r['params']:>11,} {r['tokens_per_s']:10.0f}")
    if device == "cuda":
        bf16, fp8 = rows[-2]["tokens_per_s"], rows[-1]["tokens_per_s"]
        print(f"small_20m FP8 / BF16 throughput: {fp8 / bf16:.2f}x")
    (args.out / "throughput.json").write_text(json.dumps(rows, indent=2) + "\n")
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
        mlflow.set_experiment("bench-train")
        with mlflow.start_run(run_name=f"throughput-{device}"):
            mlflow.log_metrics({f"{r['preset']}_{r['precision']}_tokens_per_s": r["tokens_per_s"] for r in rows})


if __name__ == "__main__":
    main()
