"""Decode speed, side by side in one run: the hybrid against a transformer of equal parameters, and the factory's
decoder against transformers' `generate` on the same model and prompts.

    python bench/throughput.py                                 # about 3 minutes on 2 CPU cores
    python bench/throughput.py --contexts 1024 8192 32768 --batches 1 8 --steps 8
    python bench/throughput.py --skip-generate --device cuda   # table 1 only, on a GPU

Flags: --contexts (cache lengths of table 1), --batches (sequences decoded together in table 1), --steps (decode
steps timed per cell, after 2 untimed), --repeats (measurements per cell, interleaved between the models, the best
kept), --prompts / --prompt-tokens / --new-tokens (table 2's workload),
--skip-generate (table 1 only), --threads (torch CPU threads, default 1: a decode step of a 10M-parameter model is
hundreds of small ops, and on a shared machine every op split across OpenMP threads waits for a busy core: 2 threads
measured 6-10x slower than 1 under load), --device.

Table 1, hybrid against transformer. The hybrid is the `small_20m` preset (`M-M-M*-M-M-M*-`). The transformer has
attention in every Mamba slot (`*-*-*-*-...`, the same width, depth and heads) and its MLPs widened until its
parameter count equals the hybrid's, as Nemotron-H compares at equal size. Both decode through the factory's
decoder (`factory.generate.decode_speed`), and through transformers' cached forward (`factory.stages.evaluate.
throughput`, the evaluate stage's measurement) for reference. Decode cost per token depends on the context only
through the cache, so every attention layer's keys and values are filled to the context directly. "bytes/token"
is what one decoded token must read: the weights once per step shared by the batch, plus each sequence's state
(keys and values up to the context, Mamba conv and SSM states); with the machine's measured read bandwidth it
gives the bandwidth bound on tokens/s, and "of bound" says how close each figure is to it.

Table 2, decoder against `generate`: the same model (the hybrid) and prompts, greedy, `--prompts` prompts of
`--prompt-tokens` tokens each, `--new-tokens` new tokens: transformers' `generate` with the prompts as one
unpadded batch, against `factory.generate.decode` with as many slots; "same tokens" checks they agree.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import torch

from factory.generate.decode import decode
from factory.generate.decode_speed import decode_at_context
from factory.generate.mamba_step import selective_state_update_kernel
from factory.model.build import build_model, count_parameters
from factory.model.presets import small_20m
from factory.stages.evaluate.throughput import decode_at_context as transformers_decode_at_context

VOCAB = 1024
HYBRID = "M-M-M*-M-M-M*-"


def equal_size_transformer_config(hybrid_params: int, max_context: int):
    """The hybrid's shape with attention in every Mamba slot, its MLP width raised to match `hybrid_params`."""
    base = small_20m().model_copy(update={"pattern": HYBRID.replace("M", "*"), "max_position_embeddings": max_context})
    per_unit = base.pattern.count("-") * 2 * base.hidden_size  # parameters per unit of MLP width (up and down)
    deficit = hybrid_params - count_parameters(build_model(base, VOCAB, device="meta"))
    return base.model_copy(update={"intermediate_size": base.intermediate_size + round(deficit / per_unit)})


def read_bandwidth(device: str) -> float:
    """Bytes/s this machine reads from memory: the best of a few sums over a 512 MiB tensor."""
    x = torch.ones(2**27, device=device)  # 512 MiB of float32
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - started)
    return x.numel() * x.element_size() / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192, 32768])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed per cell (after 2 untimed)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per cell, the best kept")
    parser.add_argument("--prompts", type=int, default=8, help="table 2: prompts generated together")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="table 2: tokens per prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="table 2: tokens generated per prompt")
    parser.add_argument("--skip-generate", action="store_true", help="table 1 only")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    max_context = max(args.contexts) + 64
    hybrid_config = small_20m().model_copy(update={"pattern": HYBRID, "max_position_embeddings": max_context})
    hybrid = build_model(hybrid_config, VOCAB, device=args.device).eval()
    transformer_config = equal_size_transformer_config(count_parameters(hybrid), max_context)
    transformer = build_model(transformer_config, VOCAB, device=args.device).eval()
    models = {"hybrid": hybrid, "transformer": transformer}
    params = {name: count_parameters(m) for name, m in models.items()}
    bandwidth = read_bandwidth(args.device)
    threads = torch.get_num_threads() if args.device == "cpu" else "-"
    kernel = "used" if args.device == "cuda" and selective_state_update_kernel() is not None else "not used"
    print(f"device {args.device} (torch threads {threads}), read bandwidth {bandwidth / 1e9:.1f} GB/s, "
          f"mamba-ssm selective_state_update {kernel}")
    print(f"hybrid {HYBRID}: {params['hybrid'] / 1e6:.2f}M params; transformer {transformer_config.pattern} "
          f"(MLP width {transformer_config.intermediate_size}): {params['transformer'] / 1e6:.2f}M params; fp32")

    print("\nTable 1: decode tokens/s at context, the factory's decoder (transformers' cached forward in brackets)")
    print("| context | batch | hybrid tok/s | transformer tok/s | hybrid / transformer | hybrid bytes/token | "
          "transformer bytes/token | bound ratio | hybrid of bound | transformer of bound | state ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for context in args.contexts:
        for batch in args.batches:
            best = {name: [0.0, 0.0, 0] for name in models}  # factory tok/s, transformers tok/s, state bytes
            for _ in range(args.repeats):  # interleaved, best of each: a shared machine's load comes and goes
                for name, model in models.items():
                    rate, state = decode_at_context(model, context, batch, args.steps)
                    slow, _ = transformers_decode_at_context(model, context, batch, args.steps)
                    best[name] = [max(best[name][0], rate), max(best[name][1], slow), state]
            row = {}
            for name, (rate, slow, state) in best.items():
                weights = params[name] * 4
                per_token = weights / batch + state / batch  # bytes one decoded token reads
                row[name] = (rate, slow, per_token, bandwidth / per_token, state / batch)
            (h, hs, hb, hbound, hstate), (t, ts, tb, tbound, tstate) = row["hybrid"], row["transformer"]
            print(f"| {context} | {batch} | {h:.1f} ({hs:.1f}) | {t:.1f} ({ts:.1f}) | {h / t:.2f}x ({hs / ts:.2f}x) | "
                  f"{hb / 2**20:.1f} MiB | {tb / 2**20:.1f} MiB | {tb / hb:.2f}x | {h / hbound:.0%} | {t / tbound:.0%} | "
                  f"{tstate / hstate:.1f}x |", flush=True)

    if args.skip_generate:
        return
    print(f"\nTable 2: greedy generation on the hybrid, {args.prompts} prompts x {args.prompt_tokens} tokens, "
          f"{args.new_tokens} new tokens each")
    prompts = torch.randint(0, VOCAB, (args.prompts, args.prompt_tokens), generator=torch.Generator().manual_seed(1))
    print("| batch | generate tok/s | factory decoder tok/s | decoder / generate | same tokens |")
    print("|---|---|---|---|---|")
    for batch in sorted({1, args.prompts}):
        chunks = [prompts[i : i + batch] for i in range(0, args.prompts, batch)]
        with torch.no_grad():
            hybrid.generate(chunks[0].to(args.device), max_new_tokens=2, do_sample=False, pad_token_id=0)  # warm-up
        generate_s = decode_s = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            with torch.no_grad():
                expected = [row[args.prompt_tokens :] for chunk in chunks for row in hybrid.generate(
                    chunk.to(args.device), attention_mask=torch.ones_like(chunk, device=args.device),
                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                    pad_token_id=0).tolist()]
            generate_s = min(generate_s, time.perf_counter() - started)
            started = time.perf_counter()
            got = [row for chunk in chunks for row in decode(hybrid, chunk.tolist(), args.new_tokens, slots=batch)]
            decode_s = min(decode_s, time.perf_counter() - started)
        tokens = args.prompts * args.new_tokens
        print(f"| {batch} | {tokens / generate_s:.1f} | {tokens / decode_s:.1f} | {generate_s / decode_s:.2f}x | "
              f"{'yes' if got == expected else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
