"""Cost benchmark: the plan's figures side by side with published runs, and with the rule a user would
otherwise reach for (6 x parameters per token; building the model to count it), on the same shapes.

1. Parameter counts: model cards' totals against `parameter_counts` (from the shape alone) and against a
   model built on the meta device, with the time each takes.
2. FLOPs: Megatron-Bridge's published H100 FP8 run of Llama 3 8B (25.11 container, seq 8192: 14,451
   tokens/s/GPU, 744 model TFLOP/s/GPU) against the TFLOP/s the plan's formulas and 6N give at that throughput.
3. Training budgets: Nemotron-H 56B and Nano 2 12B on 20T tokens (their papers' token counts): model FLOPs
   from the plan and from 6N x D, and GPU-days on H100 at the throughput Megatron-Bridge achieves (744 TFLOP/s).
4. Serving: Nano 2 9B and 12B at 128k context, batch 1, against the 22 GiB budget the Nano 2 paper pruned to
   (an A10G), next to the weights-only estimate.

    .venv/bin/python bench/cost.py        # ~20 s on 2 cores, most of it importing transformers
"""

from __future__ import annotations

import time

from factory.cost.estimate import GPUS, training_budget
from factory.cost.flops import dense_transformer_flops, flops_per_token
from factory.cost.memory import GIB, serving_memory
from factory.cost.param_count import parameter_counts
from factory.cost.published import PUBLISHED_COUNTS, SHAPES


def table(rows: list[tuple], title: str) -> None:
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(str(c).rjust(w) if n and i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def params() -> None:
    from factory.model import build_model, count_parameters

    rows = [("model", "published", "plan", "meta-device model", "plan ms", "meta build ms")]
    for name, pub in PUBLISHED_COUNTS.items():
        start = time.perf_counter()
        counts = parameter_counts(SHAPES[name]())
        plan_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        meta = count_parameters(build_model(SHAPES[name](), 131072, device="meta"))
        meta_ms = (time.perf_counter() - start) * 1e3
        shown = f"{pub.total:,}" if pub.unit == 1 else f"{pub.total / 1e9:.{len(str(1e9 // pub.unit)) - 3}f}B"
        plan = f"{counts.total:,}"
        if pub.active:
            shown += f" ({pub.active / 1e9:.1f}B active)"
            plan += f" ({(counts.active - counts.embedding) / 1e9:.2f}B active)"
        rows.append((name, shown, plan, f"{meta:,}", f"{plan_ms:.2f}", f"{meta_ms:.0f}"))
    table(rows, "1. parameters")


def flops() -> None:
    tokens_per_s, published_tflops = 14451, 744
    plan = dense_transformer_flops(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256, seq_len=8192)
    n_params = 8_030_261_248  # Llama 3 8B (embedding and head untied)
    six_n = 6 * (n_params - 128256 * 4096)
    rows = [("Llama 3 8B, H100 FP8, seq 8192", "GFLOP/token", "TFLOP/s/GPU at 14,451 tok/s", "vs published")]
    rows.append(("published (Megatron-Bridge)", f"{published_tflops * 1e12 / tokens_per_s / 1e9:.2f}", f"{published_tflops}", "-"))
    for label, per_token in (("plan (causal attention)", plan.training), ("6N (non-embedding)", six_n)):
        tflops = per_token * tokens_per_s / 1e12
        rows.append((label, f"{per_token / 1e9:.2f}", f"{tflops:.1f}", f"{tflops / published_tflops - 1:+.2%}"))
    table(rows, "2. FLOPs per token against published throughput")


def budgets() -> None:
    mfu = 744e12 / GPUS["H100"].peak["fp8"]
    rows = [("run (20T tokens, seq 8192)", "plan FLOPs", "6N x D", "plan / 6ND", "H100 GPU-days @744 TFLOP/s", "days on 6,144 GPUs")]
    for name in ("nemotron_h_56b", "nemotron_nano_12b_v2"):
        budget = training_budget(SHAPES[name](), 20e12, 8192, mfu=mfu)
        counts = parameter_counts(SHAPES[name]())
        six_nd = 6 * (counts.active - counts.embedding) * 20e12
        rows.append((name, f"{budget.flops:.3g}", f"{six_nd:.3g}", f"{budget.flops / six_nd:.3f}",
                     f"{budget.gpu_days:,.0f}", f"{budget.days_on(6144):.1f}"))
    table(rows, f"3. training budgets (MFU {mfu:.1%} of the H100 FP8 dense peak = Megatron-Bridge's Llama 3 8B)")


def serving() -> None:
    rows = [("model @128k, batch 1", "weights GiB", "KV cache GiB", "Mamba states GiB", "total GiB", "22 GiB budget",
             "KV GiB if every layer were attention")]
    for name in ("nemotron_nano_9b_v2", "nemotron_nano_12b_v2"):
        m = serving_memory(SHAPES[name](), 131072, 1)
        cfg = SHAPES[name]()
        dense_kv = m.kv_cache / cfg.pattern.count("*") * len(cfg.pattern)
        rows.append((name, f"{m.weights / GIB:.2f}", f"{m.kv_cache / GIB:.2f}", f"{(m.mamba_conv + m.mamba_ssm) / GIB:.3f}",
                     f"{m.total_gib:.2f}", "fits" if m.fits(22) else "does not fit", f"{dense_kv / GIB:.1f}"))
    table(rows, "4. serving memory (BF16 weights and KV cache, FP32 Mamba states) against Nano 2's A10G budget")
    per = flops_per_token(SHAPES["nemotron_nano_9b_v2"](), 131072)
    print(f"   Nano 2 9B on 128k-token sequences: {per.forward / 1e9:.1f} GFLOP forward per token on average, "
          f"{per.by_part['attention_context'] / per.forward:.0%} of it the attention context term")


if __name__ == "__main__":
    params()
    flops()
    budgets()
    serving()
