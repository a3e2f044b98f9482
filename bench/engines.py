"""The two pretraining engines side by side on a CPU: the factory's and Megatron-Core's, same model, same tokens.

Runs the pretrain stage twice on the smoke corpus (curated and tokenized as bench/precision.py caches it) with
`engine: factory` and `engine: megatron`, one process each, and prints tokens/s, the final loss and the ratio.
Information, not a goal: on a CPU Megatron runs its local layer specs and the factory's pure-PyTorch Mamba-2 mixer
(factory/engines/megatron/cpu.py); its speed on GPUs is what bench/gpu_check.sh measures.

    .venv/bin/python bench/engines.py                     # ~3-6 min on 2 cores
    .venv/bin/python bench/engines.py --steps 100 --preset small_20m --out runs/bench/engines
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a new temporary one); the "
                                                                 "tokenized smoke corpus is cached in OUT/data")
    args = parser.parse_args()

    import torch
    from precision import smoke_tokens

    from factory.stage import StepContext
    from factory.stages import pretrain

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-engines-"))
    tokens = smoke_tokens(root / "data")
    runs: dict[str, list[tuple[float, float, float]]] = {"factory": [], "megatron": []}
    for _ in range(args.rounds):  # alternating rounds, so a change in the machine's load falls on both engines
        for engine in runs:
            out = root / engine
            shutil.rmtree(out, ignore_errors=True)
            config = pretrain.Config(engine=engine, model={"preset": args.preset}, steps=args.steps, seq_len=args.seq_len,
                                     micro_batch_size=args.micro_batch, lr=3e-3, warmup_steps=max(1, args.steps // 10),
                                     checkpoint_interval=0, log_interval=max(1, args.steps // 5))
            metrics = pretrain.run(config, {"tokens": tokens}, out, StepContext(f"pretrain-{engine}"))
            runs[engine].append((metrics["tokens_seen"] / metrics["train_seconds"], metrics["final_loss"],
                                 metrics["train_seconds"]))
    print(f"\npreset {args.preset}, {args.steps} steps of {args.micro_batch} x {args.seq_len} tokens, one process, "
          f"{torch.get_num_threads()} threads, {args.rounds} alternating rounds (tokens/s: median, min-max)")
    print(f"{'engine':<10}{'tokens/s':>12}{'range':>18}{'final loss':>12}")
    median = {}
    for engine, rows in runs.items():
        speeds = sorted(r[0] for r in rows)
        median[engine] = statistics.median(speeds)
        print(f"{engine:<10}{median[engine]:>12.0f}{f'{speeds[0]:.0f}-{speeds[-1]:.0f}':>18}{rows[-1][1]:>12.4f}")
    print(f"megatron / factory tokens/s: {median['megatron'] / median['factory']:.2f}x")


if __name__ == "__main__":
    main()
