"""Precision fidelity benchmark: the tiny preset trained on the smoke corpus in BF16, FP8 and NVFP4, side by side.

Same seed, same data order, same schedule; only the training precision differs (FP8: tensorwise current
scaling, E4M3 forward / E5M2 gradients; NVFP4: the Nemotron 3 recipe with 16x16 weight blocks, random
Hadamard transform on wgrad inputs and stochastic rounding; both keep the first and last block in BF16).
Prints each run's final loss (mean of the last 10 steps) and the relative gaps to BF16 (targets: FP8
within 1 %, NVFP4 within 3 %), and writes the three loss curves to OUT/precision_loss.png.

    .venv/bin/python bench/precision.py                              # ~5 min on 2 CPU cores
    .venv/bin/python bench/precision.py --steps 300 --out runs/bench/precision --tracking-uri sqlite:///runs/bench/mlflow.db
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from factory.precision import PrecisionConfig
from factory.stage import Artifact, StepContext
from factory.stages import pretrain
from factory.train import read_metrics

RECIPES = ("bf16", "fp8", "nvfp4")
TARGET = {"fp8": 0.01, "nvfp4": 0.03}


def smoke_tokens(cache: Path) -> Artifact:
    """The smoke corpus (examples/data/smoke-html) curated and tokenized (2048-token BPE), cached in `cache`."""
    corpus, tokens = cache / "corpus", cache / "tokens"
    if not (tokens / "train.idx").exists():
        from factory.stages import curate, tokenize

        repo = Path(__file__).resolve().parent.parent
        for folder in (corpus, tokens):
            folder.mkdir(parents=True, exist_ok=True)
        curate.run(curate.Config(sources=[str(repo / "examples/data/smoke-html")]), {}, corpus, StepContext("curate"))
        tokenize.run(tokenize.Config(vocab_size=2048), {"corpus": Artifact(corpus, {"fingerprint": "bench"})}, tokens,
                     StepContext("tokenize"))
    return Artifact(tokens, {"fingerprint": "bench-smoke"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--high-precision-layers", nargs="*", default=list(PrecisionConfig().high_precision_layers),
                        help="module-name patterns of the linears kept in BF16 (default: first and last block, LM head)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/precision"))
    parser.add_argument("--tracking-uri", default=None, help="log each run's metrics and the plot to MLflow here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = smoke_tokens(args.out / "data")

    options = PrecisionConfig(high_precision_layers=tuple(args.high_precision_layers))
    curves, results = {}, {}
    for recipe in RECIPES:
        config = pretrain.Config(precision=recipe, precision_options=options, steps=args.steps, seq_len=args.seq_len,
                                 micro_batch_size=args.micro_batch_size, warmup_steps=max(1, args.steps // 10),
                                 checkpoint_interval=0, log_interval=max(1, args.steps // 10))
        out = args.out / recipe
        if out.exists():
            import shutil

            shutil.rmtree(out)
        out.mkdir(parents=True)
        ctx = StepContext(f"precision-{recipe}", tracker=_tracker(args.tracking_uri, recipe))
        results[recipe] = pretrain.run(config, {"tokens": tokens}, out, ctx)
        curves[recipe] = [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["loss"] is not None]
        print(f"{recipe:>6}: final loss {results[recipe]['final_loss']:.4f}  ({results[recipe]['train_seconds']:.0f} s)",
              file=sys.stderr)

    base = results["bf16"]["final_loss"]
    print(f"\ntiny preset, {args.steps} steps x {args.micro_batch_size} x {args.seq_len} tokens, same seed and data")
    print(f"{'recipe':>7} {'final loss':>11} {'gap vs bf16':>12} {'target':>8} {'train s':>8}")
    summary = {}
    for recipe in RECIPES:
        final = results[recipe]["final_loss"]
        gap = (final - base) / base
        target = f"{TARGET[recipe]:.0%}" if recipe in TARGET else "-"
        ok = "" if recipe not in TARGET else (" ok" if abs(gap) <= TARGET[recipe] else " MISSED")
        print(f"{recipe:>7} {final:11.4f} {gap:+12.2%} {target:>8} {results[recipe]['train_seconds']:8.0f}{ok}")
        summary[recipe] = {"final_loss": final, "relative_gap": gap}
    plot = args.out / "precision_loss.png"
    _plot(curves, plot)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"plot: {plot}")
    if args.tracking_uri:
        import mlflow

        with mlflow.start_run(run_name="precision-summary"):
            mlflow.log_metrics({f"{r}_relative_gap": s["relative_gap"] for r, s in summary.items()})
            mlflow.log_artifact(str(plot))


def _tracker(uri: str | None, recipe: str):
    """An MLflow-backed tracker for one run, or the in-memory default."""
    from factory.stage import NullTracker

    if not uri:
        return NullTracker()
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-precision")

    class MlflowTracker(NullTracker):
        def __init__(self) -> None:
            super().__init__()
            self.run = mlflow.start_run(run_name=recipe)
            mlflow.end_run()

        def log_metrics(self, metrics, step=None) -> None:
            mlflow.MlflowClient().log_batch(self.run.info.run_id, metrics=[
                mlflow.entities.Metric(k, float(v), 0, step or 0) for k, v in metrics.items()])

        def log_artifact(self, path, artifact_path=None) -> None:
            mlflow.MlflowClient().log_artifact(self.run.info.run_id, str(path), artifact_path)

    return MlflowTracker()


def _plot(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for recipe, points in curves.items():
        steps, losses = zip(*points)
        ax.plot(steps, losses, linewidth=1, label=recipe)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("tiny preset: BF16 vs FP8 vs NVFP4")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
