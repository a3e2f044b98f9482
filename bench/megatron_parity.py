"""Megatron engine on a GPU: Megatron-Core's hybrid Mamba model built from the factory's model spec, trained a
few steps in BF16 and in FP8 (Transformer Engine, the spec's recipe), then converted to a Hugging Face
`NemotronHForCausalLM` with `MegatronAdapter`; prints tokens/s, the losses, and the converted model's logits
against Megatron's on the same tokens (relative L2 error, BF16 forward on both sides) with the tolerance.

    python bench/megatron_parity.py --preset small_20m            # one GPU, one rank; exits 2 without one
    python bench/megatron_parity.py --preset tiny_moe --steps 10  # the MoE mapping
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small_20m")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of tokens/s")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=2048, help="a multiple of 128, so Megatron adds no padding rows")
    parser.add_argument("--tolerance", type=float, default=2e-2, help="largest relative L2 error of the logits")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/megatron"))
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        refuse("needs a CUDA GPU (Megatron-Core's Mamba mixer runs mamba-ssm's kernels)")
    try:
        import megatron.core  # noqa: F401  (checked here, used below)
        import transformer_engine  # noqa: F401
    except ImportError as err:
        refuse(f"{err.name} does not import; install megatron-core and transformer-engine")
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        os.environ.setdefault(name, value)
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.distributed.init_process_group("nccl")
    parallel_state.initialize_model_parallel(1, 1)
    model_parallel_cuda_manual_seed(0)

    rows = [run(recipe, args) for recipe in ("bf16", "fp8")]
    print(f"\n{torch.cuda.get_device_name()}; {args.preset}, {args.batch} x {args.seq_len} tokens per step, {args.steps} steps")
    print(f"{'precision':>9} {'tokens/s':>10} {'first loss':>10} {'last loss':>10} {'logits rel L2':>13} {'max |diff|':>10}")
    for r in rows:
        print(f"{r['precision']:>9} {r['tokens_per_s']:10.0f} {r['losses'][0]:10.4f} {r['losses'][-1]:10.4f} "
              f"{r['logits_rel_l2']:13.2e} {r['logits_max_abs']:10.3f}")
    bf16, fp8 = rows
    print(f"FP8 / BF16 tokens/s: {fp8['tokens_per_s'] / bf16['tokens_per_s']:.2f}x; "
          f"final loss FP8 vs BF16: {100 * (fp8['losses'][-1] / bf16['losses'][-1] - 1):+.2f} %; tolerance {args.tolerance:g}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity.json").write_text(json.dumps(rows, indent=2) + "\n")
    torch.distributed.destroy_process_group()
    if any(r["logits_rel_l2"] > args.tolerance or not r["round_trip_exact"] for r in rows):
        sys.exit("megatron_parity: the converted model does not match Megatron's within the tolerance")


def refuse(why: str) -> None:
    print(f"megatron_parity: {why}", file=sys.stderr)
    sys.exit(2)


def run(recipe: str, args: argparse.Namespace) -> dict:
    import torch
    from megatron.core.activations import squared_relu
    from megatron.core.models.mamba.mamba_layer_specs import mamba_stack_spec
    from megatron.core.models.mamba.mamba_model import MambaModel
    from megatron.core.transformer.transformer_config import TransformerConfig

    from factory.engines.megatron import MegatronAdapter, megatron_model_args, te_recipe
    from factory.engines.megatron.model_args import MODEL_KWARGS
    from factory.model import PRESETS, build_model
    from factory.precision.config import PrecisionConfig

    torch.manual_seed(0)
    config = PRESETS[args.preset]()
    model_args = megatron_model_args(config, args.vocab, args.seq_len)
    config_args = {k: v for k, v in model_args.items() if k not in MODEL_KWARGS}
    precision = te_recipe(recipe, PrecisionConfig(), config.num_layers)["megatron"]
    transformer_config = TransformerConfig(activation_func=squared_relu, params_dtype=torch.bfloat16, hidden_dropout=0.0,
                                           attention_dropout=0.0, **config_args, **precision)
    model = MambaModel(config=transformer_config, mamba_stack_spec=mamba_stack_spec, vocab_size=args.vocab,
                       max_sequence_length=args.seq_len, hybrid_override_pattern=model_args["hybrid_override_pattern"],
                       position_embedding_type="none", share_embeddings_and_output_weights=False).cuda()

    # learnable data: each row repeats one of 8 fixed 32-token phrases
    gen = torch.Generator().manual_seed(0)
    phrases = torch.randint(0, args.vocab, (8, 32), generator=gen)
    rows = phrases[torch.randint(0, 8, (args.batch,), generator=gen)].repeat(1, args.seq_len // 32 + 1)
    tokens = rows[:, : args.seq_len + 1].cuda()
    inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    positions = torch.arange(args.seq_len, device="cuda").expand(args.batch, -1)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses, times = [], []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model(inputs, positions, None, labels=labels).float().mean()
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    measured = times[args.warmup:] or times
    tokens_per_s = args.batch * args.seq_len * len(measured) / sum(measured)

    # parity in BF16 on both sides: FP8 is a training recipe, the exported checkpoint is BF16
    transformer_config.fp8 = None  # every Megatron module holds this one config object
    transformer_config.fp4 = None
    model.eval()
    with torch.no_grad():
        megatron_logits = model(inputs, positions, None).float()
        state = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
        adapter = MegatronAdapter(config)
        hf = build_model(config, args.vocab, device="cuda").to(torch.bfloat16).eval()
        hf.load_state_dict(adapter.to_hf(state), strict=True)
        hf_logits = hf(inputs).logits.float()
        back = adapter.from_hf(hf.state_dict())
    round_trip = set(back) == set(state) and all(torch.equal(back[k].cpu(), state[k].cpu()) for k in state)
    diff = hf_logits - megatron_logits
    return {"precision": recipe, "tokens_per_s": tokens_per_s, "losses": losses,
            "logits_rel_l2": (diff.norm() / megatron_logits.norm()).item(), "logits_max_abs": diff.abs().max().item(),
            "round_trip_exact": round_trip}


if __name__ == "__main__":
    main()
