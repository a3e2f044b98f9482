"""Compress benchmark: Minitron's claim in miniature, and the Nano 2 12B -> 9B memory report.

Part 1 (tiny, real training on CPU): the smoke corpus (examples/data/smoke-html) curated and tokenized by the curate
and tokenize stages (bench/precision.py's cached tokens); a NemotronH teacher (the tiny preset as pattern M*-M*-,
two Mamba groups) trained on it by the pretrain stage; the compress stage prunes it (width: hidden, MLP, Mamba
heads; depth: one layer); then, at the same token budget, (a) the pruned model distilled from the teacher (distill
stage), (b) the same architecture trained from scratch, (c) the pruned model without distillation. Prints
validation loss of each, and the wall time of the compress and distill stages.

Part 2 (shapes only): Nemotron Nano 2 12B and the 9B Minitron made from it: parameters and serving memory at
128k context (weights + KV cache + Mamba conv/SSM state), from `factory.cost`.

    .venv/bin/python bench/compress.py                     # ~5-10 min on 2 busy cores
    .venv/bin/python bench/compress.py --teacher-steps 300 --steps 100 --out runs/bench/compress
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The teacher: two attention layers (so depth pruning may drop one and generation still has a KV cache), two Mamba
# groups; the vocabulary is the smoke tokenizer's.
TEACHER = {"preset": "tiny", "overrides": {"pattern": "M*-M*-", "intermediate_size": 128, "mamba_groups": 2,
                                           "max_position_embeddings": 512}}
VALID_WINDOWS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=150)
    parser.add_argument("--steps", type=int, default=40, help="Token budget of distillation and of training from scratch, in steps.")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a new temporary one); the "
                                                                 "tokenized smoke corpus is cached in OUT/data")
    args = parser.parse_args()

    import torch

    from factory.stages.compress.config import PruneTarget
    from factory.stages.compress import stage as compress
    from factory.artifacts import Tokens
    from factory.model.checkpoints import lm_loss, load_model
    from factory.cost import parameter_counts, serving_memory
    from factory.cost.published import nemotron_nano_9b_v2
    from factory.stages.distill import stage as distill
    from factory.model import PRESETS
    from factory.stage import Artifact, StepContext
    from factory.stages import pretrain
    from factory.train.config import TrainConfig
    from factory.train.objectives.causal_lm import CausalLMObjective
    from factory.train.trainer import Trainer
    from precision import smoke_tokens

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-compress-"))
    for name in ("teacher", "pruned", "distilled"):  # a rerun in the same folder starts over (data stays cached)
        shutil.rmtree(root / name, ignore_errors=True)
    tokens = smoke_tokens(root / "data")
    teach = pretrain.Config(model=TEACHER, steps=args.teacher_steps, seq_len=32, micro_batch_size=8, lr=3e-3, warmup_steps=10,
                            checkpoint_interval=0, log_interval=max(1, args.teacher_steps // 10))
    pretrain.run(teach, {"tokens": tokens}, root / "teacher", StepContext("pretrain"))
    teacher = Artifact(root / "teacher", {"fingerprint": "bench-teacher"})
    valid = Tokens.of({"tokens": tokens}, "tokens").windows("valid", 32, VALID_WINDOWS)

    t = time.perf_counter()
    target = PruneTarget(hidden_size=48, intermediate_size=64, mamba_num_heads=4, drop_layers=1)
    cm = compress.run(compress.Config(target=target, calibration_samples=32, seq_len=32), {"model": teacher, "tokens": tokens},
                      root / "pruned", StepContext("compress"))
    compress_s = time.perf_counter() - t
    pruned = Artifact(root / "pruned", {"fingerprint": "pruned"})

    t = time.perf_counter()
    cfg = distill.Config(steps=args.steps, seq_len=32, micro_batch_size=8, lr=3e-3, warmup_steps=3, checkpoint_interval=0, valid_samples=len(valid))
    dm = distill.run(cfg, {"student": pruned, "teacher": teacher, "tokens": tokens}, root / "distilled", StepContext("distill"))
    distill_s = time.perf_counter() - t

    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    scratch = AutoModelForCausalLM.from_config(load_model(pruned.path / "model").config)
    train = list(Tokens.of({"tokens": tokens}, "tokens").windows("train", 32))
    Trainer(CausalLMObjective(scratch), train, TrainConfig(steps=args.steps, seq_len=32, micro_batch_size=8, lr=3e-3,
                                                           warmup_steps=3, checkpoint_interval=0)).fit()
    scratch_loss = lm_loss(scratch.eval(), valid)
    tokens_budget = args.steps * 8 * 32

    print(f"\nteacher: {cm['params_before']:.0f} params, valid loss {dm['teacher_valid_loss']:.4f}")
    print(f"pruned:  {cm['params_after']:.0f} params ({cm['layers_after']:.0f} layers); compress stage {compress_s:.1f} s")
    print(f"same budget: {args.steps} steps = {tokens_budget} tokens")
    print(f"{'model':<34}{'valid loss':>12}")
    print(f"{'prune + distil (Minitron)':<34}{dm['valid_loss_after']:>12.4f}   (distill stage {distill_s:.1f} s)")
    print(f"{'same architecture from scratch':<34}{scratch_loss:>12.4f}")
    print(f"{'prune only':<34}{dm['valid_loss_before']:>12.4f}")

    gib = 1024**3
    print("\nNemotron Nano 2 at 128k context, batch 1 (BF16 weights and KV, FP32 Mamba state):")
    print(f"{'model':<10}{'params':>16}{'weights GiB':>13}{'KV GiB':>9}{'conv MiB':>10}{'SSM MiB':>9}{'total GiB':>11}")
    for name, cfg_ in (("12B", PRESETS["nemotron_nano_12b_v2"]()), ("9B", nemotron_nano_9b_v2())):
        m = serving_memory(cfg_, 131072)
        print(f"{name:<10}{parameter_counts(cfg_, 131072).total:>16,}{m.weights / gib:>13.2f}{m.kv_cache / gib:>9.2f}"
              f"{m.mamba_conv / 2**20:>10.2f}{m.mamba_ssm / 2**20:>9.2f}{m.total_gib:>11.2f}")


if __name__ == "__main__":
    main()
