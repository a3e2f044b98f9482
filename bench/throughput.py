"""Decode throughput and inference memory against context: the hybrid against a transformer of matched size.

    python bench/throughput.py                              # contexts 1k, 8k, 32k; batch 1 and 4; CPU
    python bench/throughput.py --contexts 1024 8192 --batches 1 8 --steps 16 --device cuda

Both models share the `small_20m` preset's width, depth and heads; the transformer has attention in every
mixer slot (pattern `M-M-M*-...` becomes `*-*-*-*-...`), the matched-size model Nemotron-H compares with.
Decode cost per token depends on the context only through the cache, so the cache is filled to the context
length directly (random keys and values in every attention layer after a short real prefill; the Mamba
layers' conv and SSM states are fixed-size whatever the context): a CPU run then takes minutes, where
prefilling 32k tokens through full attention would take hours. Memory is the bytes of every tensor the
cache holds (KV cache + Mamba conv and SSM states), measured on the cache object.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import torch

from factory.stages.evaluate.throughput import decode_at_context


def build(pattern: str, max_context: int, device: str):
    from transformers import NemotronHForCausalLM

    from factory.model.presets import small_20m

    config = small_20m().model_copy(update={"pattern": pattern, "max_position_embeddings": max_context + 64})
    return NemotronHForCausalLM(config.to_hf(vocab_size=1024)).eval().to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192, 32768])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    hybrid_pattern = "M-M-M*-M-M-M*-"
    models = {"hybrid": build(hybrid_pattern, max(args.contexts), args.device),
              "transformer": build(hybrid_pattern.replace("M", "*"), max(args.contexts), args.device)}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(f"hybrid {hybrid_pattern} {params['hybrid'] / 1e6:.1f}M params; transformer "
          f"{hybrid_pattern.replace('M', '*')} {params['transformer'] / 1e6:.1f}M params; device {args.device}")
    print("| context | batch | hybrid tok/s | transformer tok/s | speed-up | hybrid cache MiB | transformer cache MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for context in args.contexts:
        for batch in args.batches:
            (h_rate, h_bytes), (t_rate, t_bytes) = (decode_at_context(models[n], context, batch, args.steps)
                                                    for n in ("hybrid", "transformer"))
            print(f"| {context} | {batch} | {h_rate:.1f} | {t_rate:.1f} | {h_rate / t_rate:.2f}x | "
                  f"{h_bytes / 2**20:.1f} | {t_bytes / 2**20:.1f} | {t_bytes / h_bytes:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
