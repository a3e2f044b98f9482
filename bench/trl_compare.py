"""Post-training speed against TRL, side by side in one run: one GRPO step (rollouts and update) of the factory's rl
stage against TRL's `GRPOTrainer`, and SFT tokens/s of the factory's sft stage against TRL's `SFTTrainer`, on the same
tiny model, prompts, conversations, batch, group size and lengths.

    .venv/bin/python bench/trl_compare.py                      # about 3 minutes on 2 CPU cores
    .venv/bin/python bench/trl_compare.py --skip-sft --max-new-tokens 256 --grpo-steps 8 --work runs/bench/trl

Flags: --threads (torch CPU threads, both sides; default 1), --prompts and --group-size (a GRPO step's batch is their
product), --max-new-tokens (one GRPO comparison per value; default 32 and 128), --grpo-steps / --sft-steps (steps
per side, the first dropped), --sft-batch, --seq-len, --lr, --train-size, --seed, --skip-grpo, --skip-sft, --work
(reuses the data and model an earlier run built there).

The model is the `tiny` NemotronH preset with random weights and a byte-level BPE tokenizer (chat markers reserved),
built through the factory's own code as `bench/posttrain.py` builds its base; the data are the posttrain_data stage's
one-digit sums. Random weights make the workload the same on both sides: almost no completion stops early, so both
GRPO runs generate (close to) `--max-new-tokens` tokens per sample. Each side runs `--*-steps` optimizer steps in one
process; the first is warm-up and dropped; the table gives the mean and the standard deviation over the rest, from the
wall clock between the ends of consecutive steps (what a user waits for, logging included) and the CPU time (below).

The factory's side is the stages' own `run()` (`factory.stages.rl`, `factory.stages.sft`), timed by a trainer callback
added through the run context; TRL's side is its trainer with a `TrainerCallback` at the same point (`on_step_end`).

GRPO settings matched (TRL name = factory name):
  - per_device_train_batch_size = micro_batch_size = prompts x group size, gradient_accumulation_steps 1,
    num_iterations 1 = steps_per_rollout 1: one rollout batch per optimizer step, strictly on-policy (ratio 1);
  - num_generations = rollout.group_size; max_completion_length = the length schedule's one max_new_tokens;
  - temperature 1, top_p 1, top_k 0 = a fixed temperature of 1 (target_entropy None: no temperature controller);
  - loss_type "dapo" (token-level mean) = the factory's token-level aggregation; epsilon 0.2, epsilon_high 0.28 =
    eps_low, eps_high; scale_rewards "group" = scale_advantages True;
  - beta 0 (TRL loads no reference model) = kl_coef 0 and log_reference_kl False (no reference model either);
  - mask_truncated_completions False = filter_overlong False; dynamic_sampling False (TRL has no DAPO dynamic
    sampling) and switch_format False (TRL has no reasoning-switch rule); no vLLM in TRL, so no importance-sampling
    correction (vllm_importance_sampling_correction applies to vLLM only);
  - stop tokens: TRL's generation_kwargs eos_token_id = the chat template's stop ids (`<|im_end|>`, EOS), the ones
    the factory's sampler stops at; reward: the same math verifier (`VerifierRewards`) on both sides;
  - float32 on CPU, no gradient checkpointing (TRL defaults to it: turned off), AdamW at the same learning rate with
    no weight decay, the same torch thread count (`--threads`).
  What differs and is not a setting: the factory samples through its own decoder (continuous batching, preallocated
  caches), TRL through transformers' `generate`; the factory also runs one no-grad forward per rollout for the
  rollout's entropy (its temperature controller and logs), which TRL does not.

SFT settings matched: the same conversations (those that fit `--seq-len`, as the factory keeps them), one per row,
loss on assistant tokens only (TRL: `assistant_only_loss`, from the chat template's generation markers), no packing
and no padding-free batching, per_device_train_batch_size = micro_batch_size, gradient_accumulation_steps 1, float32,
no gradient checkpointing, the same constant learning rate (no learning-rate warm-up). Tokens/s counts the
assistant tokens that take loss on both sides. One difference: the factory pads every row to the longest
conversation of the data set (one row shape for the run), TRL to the longest in the batch.

Both clocks are printed: the wall clock between step ends, and this process's CPU time over the same steps. On a
shared machine the wall clock also counts waiting for a core and for the math verifier's worker process (under load
about 0.2-0.3 s of a GRPO step's wall clock, almost no CPU in this process, alike on both sides); CPU time is the
steadier figure, and "best" (the fastest timed step) the one least touched by other work.

Measured on a shared 2-core CPU, TRL 1.16.0, transformers 5.24, torch 2.13, 1 thread, the defaults, in runs at
load averages from about 1 to 12 (other work on the machine); the range over the runs, since the spread between runs
is far larger than within one, then the one run on a quiet machine (load about 1):

                                         factory           TRL               ratio: wall      CPU time     quiet run
    GRPO, 32 new tokens (7 runs)         0.34-1.01 s/step  0.47-1.78 s/step  1.26-1.88x      1.14-1.42x   1.35x / 1.42x
    GRPO, 128 new tokens (5 runs)        0.88-2.32 s/step  1.04-3.78 s/step  1.11-3.72x      1.23-1.73x   1.11x / 1.23x
    SFT, batch 16, seq_len 128 (6 runs)  747-3452 tok/s    596-2855 tok/s    0.92-1.60x      1.08-1.62x   1.21x / 1.23x

(GRPO ratios are TRL's seconds over the factory's, SFT's the factory's tokens/s over TRL's.) So SFT is at or above
TRL's speed in all but one loaded run; the GRPO step is faster than TRL's but short of the 1.5x goal on a quiet
machine, and TRL's `generate` (many small ops per token) loses more than the factory's decoder when cores are busy.

Where a GRPO step's CPU time goes (128 new tokens, per step, the warm-up included, two loaded runs): sampling
0.32-0.37 s in the factory's decoder against 0.79-1.0 s in TRL's `generate` (2.5-2.7x); the factory's extra no-grad
forward over the rollout for its entropy 0.14-0.15 s (TRL computes the entropy in the loss forward only, and so
could the factory: the training forward already sums it); the update is the same model and loss on both sides. So
the step's ratio is the decoder's gain diluted by the shared update, the verifier and that extra forward.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

import torch
from datasets import Dataset
from posttrain import build_base
from transformers import AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from factory.artifacts import Conversations
from factory.chat.template import encode_chat, stop_token_ids
from factory.model.checkpoints import load_model
from factory.stage import Artifact, NullTracker, StepContext
from factory.stages import posttrain_data, rl, sft
from factory.stages.rl.rewards import RewardConfig, VerifierRewards
from factory.train.callbacks import read_metrics
from factory.train.trainer import Callback


class FactoryClock(Callback):
    """Wall clock at the start of training and at every step's end, with the step's loss tokens."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []
        self.tokens: list[int] = []

    def on_train_start(self, trainer) -> None:
        self.marks = [now()]

    def on_step_end(self, trainer, metrics) -> None:
        self.marks.append(now())
        self.tokens.append(metrics.tokens)


class TRLClock(TrainerCallback):
    """The same marks on a transformers `Trainer`."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks = [now()]

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(now())


def now() -> tuple[float, float]:
    """(wall clock, this process's CPU time): on a shared machine the wall clock also counts waiting for a core,
    the CPU time does not (the math verifier's worker processes are left out of it, on both sides alike)."""
    return time.perf_counter(), time.process_time()


class Steps(NamedTuple):
    wall: list[float]  # seconds per step, the first (warm-up) dropped
    cpu: list[float]  # CPU seconds of this process per step, the same steps


def step_seconds(marks: list[tuple[float, float]]) -> Steps:
    pairs = list(itertools.pairwise(marks))[1:]
    return Steps([b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs])


def cell(x: list[float], width: int = 14) -> str:
    """'mean ± sd' right-aligned in `width` characters."""
    sd = statistics.stdev(x) if len(x) > 1 else math.nan
    return f"{f'{statistics.fmean(x):.3f} ± {sd:.3f}':>{width}}"


def ratio(slow: list[float], fast: list[float]) -> float:
    return statistics.fmean(slow) / statistics.fmean(fast)


def build_inputs(work: Path, args) -> tuple[Artifact, Artifact]:
    """The posttrain_data stage's one-digit sums and the random-init tiny NemotronH (as bench/posttrain.py builds it)."""
    sums = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
            "allow_parentheses": False, "allow_negation": False}
    data_dir = work / "data"
    if not (data_dir / "stats.json").exists():
        config = posttrain_data.Config(procedural=[{"generator": "basic_arithmetic", "size": args.train_size,
                                                    "seed": args.seed, "params": sums}])
        posttrain_data.run(config, {}, data_dir, StepContext("posttrain_data", tracker=NullTracker()))
    data = Artifact(data_dir, {"fingerprint": "data", "kind": "conversations"})
    if (work / "base/model").exists():
        base = Artifact(work / "base", {"fingerprint": "base", "kind": "checkpoint"})
    else:
        base = build_base(data_dir, work / "base", args.seed)
    return data, base


def grpo_factory(args, max_new: int, data: Artifact, base: Artifact, out: Path) -> tuple[Steps, float]:
    """Seconds per step after the warm-up, and the mean completion length over the timed steps."""
    config = rl.Config(steps=args.grpo_steps, lr=args.lr, micro_batch_size=args.prompts * args.group_size,
                       checkpoint_interval=0, verifiers=["math"], seed=args.seed, kl_coef=0.0, log_reference_kl=False,
                       rollout={"group_size": args.group_size, "reasoning": "off", "temperature": 1.0,
                                "target_entropy": None, "dynamic_sampling": False, "filter_overlong": False,
                                "switch_format": False,
                                "length_schedule": [{"until_fraction": 1.0, "max_new_tokens": max_new}]},
                       rewards={"math_workers": 1})
    clock = FactoryClock()
    rl.run(config, {"model": base, "data": data}, out, StepContext("rl", tracker=NullTracker(), callbacks=[clock]))
    lengths = [r["response_length"] for r in read_metrics(out / "rollouts.jsonl")][1:]
    return step_seconds(clock.marks), statistics.fmean(lengths)


def grpo_trl(args, max_new: int, data: Artifact, base: Artifact, out: Path) -> tuple[Steps, float]:
    """Seconds per step after the warm-up, and the mean completion length over the timed steps."""
    model_dir = base.path / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    items = [p for p in Conversations.of({"data": data}, "data").prompts() if p.verifier == "math"]
    dataset = Dataset.from_list([{"prompt": p.chat("off"), "item": i} for i, p in enumerate(items)])
    verifier = VerifierRewards(RewardConfig(math_workers=1))

    def math_reward(prompts, completions, item, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return verifier.score([items[i] for i in item], texts)

    batch = args.prompts * args.group_size
    config = GRPOConfig(
        output_dir=str(out), max_steps=args.grpo_steps, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, num_generations=args.group_size, max_completion_length=max_new,
        temperature=1.0, top_p=1.0, top_k=0, loss_type="dapo", beta=0.0, epsilon=0.2, epsilon_high=0.28,
        scale_rewards="group", num_iterations=1, mask_truncated_completions=False, learning_rate=args.lr,
        weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, gradient_checkpointing=False, bf16=False,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=1, seed=args.seed, dataloader_num_workers=0,
        generation_kwargs={"eos_token_id": [i for i in stop_token_ids(tokenizer) if i != tokenizer.unk_token_id]})
    clock = TRLClock()
    model = load_model(model_dir)
    with verifier:
        trainer = GRPOTrainer(model=model, reward_funcs=math_reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[clock])
        trainer.train()
    lengths = [r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r][1:]
    return step_seconds(clock.marks), statistics.fmean(lengths)


def sft_factory(args, data: Artifact, base: Artifact, out: Path) -> tuple[Steps, list[int]]:
    config = sft.Config(steps=args.sft_steps, micro_batch_size=args.sft_batch, lr=args.lr, warmup_steps=0,
                        seq_len=args.seq_len, checkpoint_interval=0, switch_prompts=0, valid_fraction=0.0, valid_max=0,
                        seed=args.seed)
    clock = FactoryClock()
    sft.run(config, {"model": base, "data": data}, out, StepContext("sft", tracker=NullTracker(), callbacks=[clock]))
    return step_seconds(clock.marks), clock.tokens[1:]


class CountingSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer that counts the tokens taking loss in every batch (labels other than -100)."""

    loss_tokens: list[int]

    def compute_loss(self, model, inputs, *a, **kw):
        self.loss_tokens.append(int((inputs["labels"][:, 1:] != -100).sum()))
        return super().compute_loss(model, inputs, *a, **kw)


def sft_trl(args, data: Artifact, base: Artifact, out: Path) -> tuple[Steps, list[int]]:
    model_dir = base.path / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    rows = []
    for c in Conversations.of({"data": data}, "data").train():
        messages = [m.model_dump(exclude_none=True) for m in c.messages]
        if encode_chat(tokenizer, messages, args.seq_len) is not None:  # the factory skips longer ones
            rows.append({"messages": messages})
    config = SFTConfig(
        output_dir=str(out), max_steps=args.sft_steps, per_device_train_batch_size=args.sft_batch,
        gradient_accumulation_steps=1, max_length=args.seq_len, packing=False, padding_free=False,
        assistant_only_loss=True, learning_rate=args.lr, weight_decay=0.0, lr_scheduler_type="constant",
        warmup_steps=0, gradient_checkpointing=False, bf16=False, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=1, seed=args.seed, dataloader_num_workers=0)
    clock = TRLClock()
    trainer = CountingSFTTrainer(model=load_model(model_dir), args=config, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer, callbacks=[clock])
    trainer.loss_tokens = []
    trainer.train()
    return step_seconds(clock.marks), trainer.loss_tokens[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for data, model and runs (default: temporary).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for both sides (default 1: "
                                                               "a busy 2-core machine).")
    parser.add_argument("--train-size", type=int, default=128, help="Procedural prompts (conversations: both modes).")
    parser.add_argument("--prompts", type=int, default=4, help="Prompts per GRPO step.")
    parser.add_argument("--group-size", type=int, default=8, help="Completions per prompt (G).")
    parser.add_argument("--max-new-tokens", type=int, nargs="+", default=[32, 128],
                        help="Most tokens per completion: one GRPO comparison per value.")
    parser.add_argument("--grpo-steps", type=int, default=6, help="GRPO steps per side (the first is warm-up).")
    parser.add_argument("--sft-steps", type=int, default=12, help="SFT steps per side (the first is warm-up).")
    parser.add_argument("--sft-batch", type=int, default=16, help="Conversations per SFT step.")
    parser.add_argument("--seq-len", type=int, default=128, help="Longest conversation SFT keeps (TRL: max_length).")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-grpo", action="store_true")
    parser.add_argument("--skip-sft", action="store_true")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        work = args.work or Path(tempfile.mkdtemp(prefix="bench-trl-"))
        work.mkdir(parents=True, exist_ok=True)
        data, base = build_inputs(work, args)
        lines = []
        if not args.skip_grpo:
            for max_new in args.max_new_tokens:
                ours, our_len = grpo_factory(args, max_new, data, base, work / f"grpo-factory-{max_new}")
                theirs, their_len = grpo_trl(args, max_new, data, base, work / f"grpo-trl-{max_new}")
                lines += [(f"GRPO step ({args.prompts} prompts x {args.group_size}, at most {max_new} new tokens), "
                           f"{len(ours.wall)} steps after 1 warm-up, mean ± sd and best:"),
                          f"  {'':16}{'s/step':>14}{'best':>7}{'CPU s/step':>16}{'best':>7}{'mean completion':>18}",
                          (f"  {'factory rl':16}{cell(ours.wall)}{min(ours.wall):>7.3f}{cell(ours.cpu, 16)}"
                           f"{min(ours.cpu):>7.3f}{our_len:>11.1f} tokens"),
                          (f"  {'TRL GRPOTrainer':16}{cell(theirs.wall)}{min(theirs.wall):>7.3f}{cell(theirs.cpu, 16)}"
                           f"{min(theirs.cpu):>7.3f}{their_len:>11.1f} tokens"),
                          (f"  speed-up (TRL / factory): {ratio(theirs.wall, ours.wall):.2f}x wall clock, "
                           f"{ratio(theirs.cpu, ours.cpu):.2f}x CPU time; best steps {min(theirs.wall) / min(ours.wall):.2f}x, "
                           f"{min(theirs.cpu) / min(ours.cpu):.2f}x   (goal >= 1.5x)")]
        if not args.skip_sft:
            ours, our_tokens = sft_factory(args, data, base, work / "sft-factory")
            theirs, their_tokens = sft_trl(args, data, base, work / "sft-trl")
            rates = {name: (sum(t) / sum(s.wall), sum(t) / sum(s.cpu))
                     for name, s, t in (("factory", ours, our_tokens), ("trl", theirs, their_tokens))}
            best = {name: (statistics.fmean(t) / min(st.wall), statistics.fmean(t) / min(st.cpu))
                    for name, st, t in (("factory", ours, our_tokens), ("trl", theirs, their_tokens))}
            lines += [(f"SFT (batch {args.sft_batch}, seq_len {args.seq_len}), assistant tokens per second, "
                       f"{len(ours.wall)} steps after 1 warm-up (best: mean tokens per step over the fastest step):"),
                      f"  {'':16}{'tokens/s':>10}{'best':>7}{'per CPU s':>11}{'best':>7}{'s/step':>16}{'tokens/step':>13}",
                      *[(f"  {label:16}{rates[name][0]:>10.0f}{best[name][0]:>7.0f}{rates[name][1]:>11.0f}{best[name][1]:>7.0f}"
                         f"{cell(st.wall, 16)}{statistics.fmean(t):>13.0f}")
                        for label, name, st, t in (("factory sft", "factory", ours, our_tokens),
                                                   ("TRL SFTTrainer", "trl", theirs, their_tokens))],
                      (f"  ratio (factory / TRL): {rates['factory'][0] / rates['trl'][0]:.2f}x wall clock, "
                       f"{rates['factory'][1] / rates['trl'][1]:.2f}x CPU time; best steps "
                       f"{best['factory'][0] / best['trl'][0]:.2f}x, {best['factory'][1] / best['trl'][1]:.2f}x   (goal >= 1x)")]
        print(f"\ntorch threads {args.threads}; model: tiny NemotronH, random init; work folder {work}")
        print("\n".join(lines))
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
