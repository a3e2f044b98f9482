"""Post-training fidelity at tiny scale: held-out verifiable accuracy of base < SFT < SFT + GRPO, and the
reasoning switch obeyed.

One run, on the same data: the posttrain_data stage writes procedural one-digit sums (reasoning-gym
`basic_arithmetic`) with the procedural solver as teacher, in both reasoning modes, plus held-out prompts from
a seed training never used (the stage drops every held-out item from training); a tiny NemotronH (random init:
the "base", with a byte-level BPE tokenizer that reserves the chat markers) is fine-tuned by the sft stage, then
trained by the rl stage (GRPO, math verifier, both reasoning modes), once per `--rl-seeds` seed from the same SFT
model. Each model answers every held-out prompt under `detailed thinking on` and `off`, greedily and with
`--samples` replies at `--temperature` (pass@1 as reasoning models are scored); the table gives accuracy
(math-verify on the final answer) with standard errors, and the share of answers that open with a `<think>`
block. The alternative a user would pick for the RL step, SFT trained on for as many optimizer steps
(`--no-sft-more` skips it), shows whether GRPO's gain comes from the reward or from more steps.

    .venv/bin/python bench/posttrain.py                  # about 17 min on 2 CPU cores (4 GRPO runs of 300 steps)
    .venv/bin/python bench/posttrain.py --rl-seeds 0 --rl-steps 150 --work runs/bench/posttrain

Measured on 2 CPU cores with the defaults (SFT 500 steps of 16 conversations; GRPO 300 steps of 4 prompts x 8
samples, lr 1e-4, fixed temperature 1, no KL, seeds 0-3). 48 held-out sums x 2 modes (one-digit sums have 100
items, and the held-out ones are items training never saw); pass@1 over 8 samples at temperature 0.6; standard
errors over items, paired between models:

    model                    greedy            pass@1            <think> on / off
    base (random init)       0.042 +- 0.020    0.036 +- 0.006      0% / 0%
    sft                      0.292 +- 0.046    0.290 +- 0.033    100% / 0%
    sft + grpo, seed 0       0.385 +- 0.050    0.336 +- 0.038    100% / 0%
    sft + grpo, seed 1       0.323 +- 0.048    0.323 +- 0.038    100% / 0%
    sft + grpo, seed 2       0.365 +- 0.049    0.341 +- 0.038    100% / 0%
    sft + grpo, seed 3       0.354 +- 0.049    0.335 +- 0.038    100% / 0%
    sft, 300 more steps      0.240 +- 0.044    0.238 +- 0.038    100% / 0%

    paired differences                              greedy            pass@1
    sft - base                                      +0.250 +- 0.049   +0.254 +- 0.035
    sft + grpo (mean of 4 seeds) - sft              +0.065 +- 0.045   +0.043 +- 0.023   every seed > 0
    sft + grpo (mean of 4 seeds) - sft, 300 more    +0.117 +- 0.044   +0.095 +- 0.032

With `--rl-steps 150` the same four seeds give +0.057 +- 0.039 (greedy) and +0.033 +- 0.019 (pass@1) over SFT,
every seed > 0, and +0.078 +- 0.032 / +0.060 +- 0.017 over SFT with 150 more steps. The training reward rises in
every run (about 0.69 -> 0.74 over 300 steps). A run from scratch reproduces the table exactly: the SFT and
GRPO weights are bit-identical to those of runs made piece by piece. The gain over SFT is small next to the item standard error because
only 48 unseen one-digit sums exist; GRPO's gain over more SFT, the alternative, is clear.

Budget control (Nemotron Nano 2, `--budget-control FRACTION`): the same data with that share of its mode-on
solutions also written cut at a budget drawn from `--budgets` and closed (posttrain_data's `budget_control`, in the
base tokenizer's tokens), SFT from the same base for as many steps, then both SFT models' mode-on greedy accuracy
with the thinking cut at each budget (the factory's generator, as the evaluate stage sweeps budgets), paired over the
same held-out items. Measured on 2 busy CPU cores (4.0 min):

    .venv/bin/python bench/posttrain.py --sft-steps 300 --rl-seeds --no-sft-more --samples 0 --budget-control 0.3 --only-budget

    50 cut copies beside 336 full traces (budgets 0: 15, 2: 10, 4: 14, 8: 11); a full think block ends at token 9
    thinking budget   sft              sft + budget data   difference (paired)
    0, 2, 4, 8, 16    0.188 +- 0.057   0.083 +- 0.040      -0.104 +- 0.068      (the same at every budget)
    none              0.188 +- 0.057   0.083 +- 0.040      -0.104 +- 0.068

No gain (-1.5 standard errors, not significant): at this scale the cut costs nothing to begin with. Both tiny models
write the same final answer whatever the budget, because their answer does not depend on their thinking (a reply's
think block reads "8 + 1 = 9" and its answer is \\boxed{11}): truncating a thought the answer never reads
changes nothing, so there is no loss for budget-control data to recover. The measurement needs a model whose answers
use their thinking (longer tasks, more training) before it can show the gain Nano 2 reports.

On-policy distillation (`--opd`, the opd stage): the SFT model distilled on its own samples from a stronger teacher
(`--opd-teacher-steps N`: SFT from the same base for N steps; 0: the first seed's GRPO model), for as many steps and
sampled completions per step as GRPO (reverse KL per token, lr `--opd-lr`), against GRPO from the same SFT model.
Measured on 2 busy CPU cores (6.9 min, `--work` holding the budget run's data, base and 300-step SFT), greedy, 48 held-out
sums x 2 modes, paired over the same items:

    .venv/bin/python bench/posttrain.py --sft-steps 300 --rl-seeds 0 1 --rl-steps 150 --no-sft-more --samples 0 \\
        --opd --opd-teacher-steps 600

    model                      greedy (both modes)   on      off
    sft (300 steps)            0.198 +- 0.041        0.188   0.208
    sft + grpo, seed 0         0.208 +- 0.041        0.208   0.208
    sft + grpo, seed 1         0.219 +- 0.042        0.229   0.208
    sft teacher (600 steps)    0.229 +- 0.043        0.208   0.250
    sft + opd                  0.271 +- 0.045        0.271   0.271

    student tokens sampled: opd 69,849, grpo 70,232 and 70,297 (150 steps x 32 completions each; GRPO's dynamic
    sampling may draw more); reverse KL to the teacher 0.49 (first step) -> 0.37 (last); opd 54 s, grpo 116-139 s
    sft + opd - sft + grpo (mean of 2 seeds)   +0.057 +- 0.026   (each seed: +0.062 +- 0.025, +0.052 +- 0.027)
    sft + opd - its teacher                    +0.042 +- 0.059   (not significant)
    sft + grpo (mean of 2 seeds) - sft         +0.016 +- 0.019

At equal student tokens, on-policy distillation beats GRPO by 2.2 standard errors (one OPD run, two GRPO seeds;
the dense per-token signal against a sparse 0/1 reward), and costs less than half the time per step (no verifier, no
groups). The student reaches its teacher but is not shown to pass it.

Settings that do not gain, measured with seed 0 (greedy, GRPO - SFT): lr 5e-4 over 150 steps -0.115 +- 0.051
(fixed temperature) and -0.031 +- 0.050 (the temperature controller at the stage's default target 0.3, which heats
this model to about 1.45); lr 5e-4 with the k3 KL at 0.1 recovers (+0.062 +- 0.044, seed 1). Other tasks
(`--terms 3`, `--operators + -`): SFT reaches 0.43 and 0.23; GRPO at lr 1e-4 gains +0.005 +- 0.030 (3 terms,
150 steps, seed 0) and +0.021 +- 0.018 (+ and -, 300 steps, mean of seeds 0-2, every seed > 0); at lr 5e-4
the 3-term policy collapses (-0.391).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from common import build_base  # bench/common.py: the tiny base bench/rl_envs.py builds too
from transformers import AutoTokenizer


def answer(model, tok, prompts: list, reasoning: str, max_new_tokens: int, batch_size: int = 32,
           samples: int = 0, temperature: float = 1.0, seed: int = 0) -> list[str]:
    """Replies of `model` (special tokens kept, cut at the end of turn) to each prompt under the switch: one greedy
    reply per prompt, or with `samples` > 0 that many sampled at `temperature` (prompt-major: prompt 0's first)."""
    import torch

    from factory.chat.template import IM_END, render_prompt

    stops = [i for i in (tok.convert_tokens_to_ids(IM_END), tok.eos_token_id) if i is not None]
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=samples) \
        if samples else dict(do_sample=False)
    torch.manual_seed(seed)
    replies = []
    for start in range(0, len(prompts), batch_size):
        rendered = [render_prompt(tok, p.chat(reasoning)) for p in prompts[start : start + batch_size]]
        width = max(map(len, rendered))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rendered])  # left padding: the prompts end together
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rendered])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 eos_token_id=stops, pad_token_id=pad, **sampling)
        for row in out[:, width:].tolist():
            end = next((k for k, t in enumerate(row) if t in stops), len(row))
            replies.append(tok.decode(row[:end], skip_special_tokens=False))
    return replies


def score(model_dir: Path, prompts: list, max_new_tokens: int, rewards, samples: int, temperature: float
          ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Greedy accuracy (with standard error) and think-block rate under each switch setting, and pass@1 over
    `samples` sampled replies at `temperature` (how reasoning models are scored); every item's verdict per
    measure (both modes), for paired differences between models."""
    from transformers import AutoTokenizer

    from factory.model.checkpoints import load_model

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = load_model(model_dir)
    row: dict[str, float] = {}
    verdicts: dict[str, list[float]] = {"greedy": [], "sampled": []}
    for mode in ("on", "off"):
        replies = answer(model, tok, prompts, mode, max_new_tokens)
        correct = rewards.score(prompts, replies)
        verdicts["greedy"] += correct
        n = len(correct)
        acc = sum(correct) / n
        row[f"acc_{mode}"] = acc
        row[f"se_{mode}"] = math.sqrt(acc * (1 - acc) / n) if n > 1 else math.nan
        row[f"think_{mode}"] = sum(r.lstrip().startswith("<think>") for r in replies) / n
        if samples:
            sampled = answer(model, tok, prompts, mode, max_new_tokens, samples=samples, temperature=temperature)
            ok = rewards.score([p for p in prompts for _ in range(samples)], sampled)
            verdicts["sampled"] += [sum(ok[i * samples:(i + 1) * samples]) / samples for i in range(len(prompts))]
    row["acc"] = (row["acc_on"] + row["acc_off"]) / 2
    row["se"] = math.sqrt((row["se_on"] ** 2 + row["se_off"] ** 2) / 4)
    if samples:
        row["pass1"], row["pass1_se"] = mean_se(verdicts["sampled"])
    return row, verdicts


def budget_verdicts(model_dir: Path, prompts: list, budgets: list[int], max_new_tokens: int, answer_budget: int,
                    bridge: str, rewards) -> dict[int | None, list[float]]:
    """Every held-out item's verdict in mode on under each thinking budget, and unbudgeted (key None), through the
    factory's generator greedily, as the evaluate stage sweeps budgets: thinking cut at the budget, closed (`bridge`,
    then the end-of-thinking marker), then the answer within `answer_budget` tokens."""
    from factory.generate import GenerationParams
    from factory.generate.transformers_model import TransformersGenerator

    generator = TransformersGenerator(model_dir, batch_size=16)
    out: dict[int | None, list[float]] = {}
    for budget in [*budgets, None]:
        params = GenerationParams(max_new_tokens=max_new_tokens, reasoning="on", thinking_budget=budget,
                                  answer_budget=answer_budget if budget is not None else None,
                                  bridge=bridge if budget is not None else "")
        out[budget] = rewards.score(prompts, generator.generate([p.chat("on") for p in prompts], params))
    return out


def mean_se(x: list[float]) -> tuple[float, float]:
    """Mean and its standard error over items."""
    mean = sum(x) / len(x)
    var = sum((v - mean) ** 2 for v in x) / (len(x) - 1) if len(x) > 1 else math.nan
    return mean, math.sqrt(var / len(x))


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of b - a over the same items, and its standard error (paired: item difficulty cancels)."""
    return mean_se([y - x for x, y in zip(a, b)])


def budget_table(args, work: Path, data_config, base, sft_config, sft_out: Path, heldout: list, what: str, timed) -> dict:
    """Budget control (Nemotron Nano 2): the same data with `--budget-control` of its mode-on solutions also written cut
    at a budget drawn from `--budgets` (in the base tokenizer's tokens) and answered, SFT from the same base for as
    many steps, then both SFT models' mode-on accuracy against thinking budget on the same held-out items, with
    paired differences. Prints the table; returns it."""
    from factory.chat.records import read_conversations
    from factory.stage import Artifact, StepContext
    from factory.stages import posttrain_data, sft
    from factory.stages.posttrain_data.budget_control import BudgetCutter
    from factory.stages.rl.rewards import RewardConfig, VerifierRewards

    control = {"fraction": args.budget_control, "budgets": args.budgets, "bridge": args.bridge, "seed": args.seed}
    config = posttrain_data.Config.model_validate({**data_config.model_dump(), "budget_control": control})
    data_dir = work / "data_budget"
    if not (data_dir / "stats.json").exists():
        timed("posttrain_data (budget control)", lambda: posttrain_data.run(config, {"model": base}, data_dir,
                                                                          StepContext("posttrain_data_budget")))
    data = Artifact(data_dir, {"fingerprint": "data_budget", "kind": "conversations"})
    out = work / "sft_budget"
    if not (out / "model").exists():
        timed("sft (budget control)", lambda: sft.run(sft_config, {"model": base, "data": data}, out, StepContext("sft_budget")))
    counts = json.loads((data_dir / "stats.json").read_text())["budget_control"]
    tok = AutoTokenizer.from_pretrained(base.path / "model", local_files_only=True)
    cutter = BudgetCutter(config.budget_control, tok)
    lengths = sorted(cutter.thinking_tokens(tok(c.reply, add_special_tokens=False)["input_ids"])
                     for c in read_conversations(data_dir / "train.jsonl") if c.reasoning == "on" and "thinking_budget" not in c.meta)

    with VerifierRewards(RewardConfig(math_workers=2)) as rewards:
        verdicts = {name: timed(f"budget eval {name}", lambda d=d: budget_verdicts(
            d, heldout, args.budgets, args.max_new_tokens + 16, args.max_new_tokens, args.bridge, rewards))
            for name, d in (("sft", sft_out / "model"), ("sft + budget data", out / "model"))}
    print(f"\nbudget control: {counts.get('written', 0)} cut copies beside {sum(1 for _ in lengths) * 2} full traces "
          f"({args.budget_control:.0%} of mode-on solutions drawn; per budget "
          f"{', '.join(f'{k[7:]}: {v}' for k, v in counts.items() if k.startswith('budget_'))}; uncut {counts.get('uncut', 0)}); "
          f"a full trace's think block ends at token {lengths[len(lengths) // 2]} (median; range {lengths[0]}-{lengths[-1]})")
    print(f"held-out {what}: {len(heldout)} prompts, mode on, greedy, thinking cut at the budget and closed"
          f"{f' with {args.bridge!r}' if args.bridge else ''}, answer within {args.max_new_tokens} tokens; "
          f"SFT {sft_config.steps} steps each, from the same base")
    print(f"{'thinking budget':<16} {'sft':>16} {'sft + budget data':>20} {'difference (paired)':>22}")
    table = {}
    for budget in [*args.budgets, None]:
        a, b = verdicts["sft"][budget], verdicts["sft + budget data"][budget]
        (ma, sa), (mb, sb), (d, sd) = mean_se(a), mean_se(b), paired(a, b)
        label = "none" if budget is None else str(budget)
        table[label] = {"sft": [ma, sa], "sft_budget": [mb, sb], "difference": [d, sd]}
        print(f"{label:<16} {ma:>8.3f} ± {sa:.3f} {mb:>12.3f} ± {sb:.3f} {d:>+14.3f} ± {sd:.3f}")
    # one paired figure over every budget: each item's mean verdict across the budgets, the difference of those
    per_item = [[sum(verdicts[m][bud][i] for bud in args.budgets) / len(args.budgets) for i in range(len(heldout))]
                for m in ("sft", "sft + budget data")]
    d, sd = paired(*per_item)
    table["mean over budgets"] = {"difference": [d, sd]}
    print(f"{'mean of budgets':<16} {mean_se(per_item[0])[0]:>8.3f} {'':>7} {mean_se(per_item[1])[0]:>12.3f} {'':>7} "
          f"{d:>+14.3f} ± {sd:.3f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the artifacts (default: a temporary one).")
    parser.add_argument("--train-size", type=int, default=256, help="Training prompts (each in both reasoning modes).")
    parser.add_argument("--heldout-size", type=int, default=48, help="Held-out prompts (a seed training never used).")
    parser.add_argument("--sft-steps", type=int, default=500)
    parser.add_argument("--sft-batch", type=int, default=16, help="Conversations per SFT step.")
    parser.add_argument("--rl-steps", type=int, default=300)
    parser.add_argument("--rl-lr", type=float, default=1e-4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--target-entropy", type=float, default=0.0,
                        help="Entropy the temperature controller holds (0, the default here: a fixed sampling temperature "
                             "of 1; the stage's default 0.3 heats this tiny model to about 1.45 and gains nothing).")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-sft-more", dest="sft_more", action="store_false",
                        help="Skip the SFT-only baseline with as many extra steps as RL takes.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data, the base model and SFT.")
    parser.add_argument("--rl-seeds", type=int, nargs="*", default=[0, 1, 2, 3],
                        help="One GRPO run from the SFT model per seed (the seed of its rollouts and data order).")
    parser.add_argument("--kl-coef", type=float, default=0.0, help="Weight of GRPO's k3 KL to the SFT model.")
    parser.add_argument("--terms", type=int, default=2, help="Terms per expression (one-digit numbers).")
    parser.add_argument("--operators", nargs="+", default=["+"], help="Operators of the expressions (reasoning-gym's).")
    parser.add_argument("--samples", type=int, default=8, help="Sampled replies per held-out prompt for pass@1 (0: greedy only).")
    parser.add_argument("--temperature", type=float, default=0.6, help="Sampling temperature of pass@1.")
    parser.add_argument("--budget-control", type=float, default=0.0, metavar="FRACTION",
                        help="Also train SFT on data with budget-control copies (this share of mode-on solutions cut at a "
                             "budget drawn from --budgets) and compare both SFT models' mode-on accuracy against thinking "
                             "budget (0: skip).")
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 2, 4, 8, 16],
                        help="Thinking budgets (tokens) the budget table sweeps and the budget-control data cuts at.")
    parser.add_argument("--bridge", default="", help="Text before the end-of-thinking marker of a cut think block "
                                                     "(training copies and inference alike).")
    parser.add_argument("--opd", action="store_true",
                        help="Also distil the SFT model on-policy (the opd stage) from a stronger teacher (see "
                             "--opd-teacher-steps), for --rl-steps steps of as many samples as GRPO's, and compare it "
                             "with the GRPO runs.")
    parser.add_argument("--opd-lr", type=float, default=1e-4, help="Learning rate of on-policy distillation.")
    parser.add_argument("--opd-teacher-steps", type=int, default=0,
                        help="With --opd: the teacher is SFT from the same base for this many steps (0: the first "
                             "--rl-seeds seed's GRPO model).")
    parser.add_argument("--only-budget", action="store_true",
                        help="With --budget-control: skip the model table (base, GRPO, more SFT); the budget table only.")
    args = parser.parse_args()

    import torch

    from factory.stages import opd, posttrain_data, rl, sft
    from factory.chat.records import read_prompts
    from factory.stages.rl.rewards import RewardConfig, VerifierRewards
    from factory.stage import StepContext

    torch.set_num_threads(1)  # tiny matmuls gain nothing from a second thread on a shared machine
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-posttrain-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - start
        return result

    sums = {"min_terms": args.terms, "max_terms": args.terms, "min_digits": 1, "max_digits": 1, "operators": args.operators,
            "allow_parentheses": False, "allow_negation": False}
    data_config = posttrain_data.Config(procedural=[{"generator": "basic_arithmetic", "size": args.train_size,
                                                     "seed": args.seed, "params": sums,
                                                     "heldout_size": args.heldout_size, "heldout_seed": 1_000_003 + args.seed}])
    data_dir = work / "data"
    if not (data_dir / "stats.json").exists():
        timed("posttrain_data", lambda: posttrain_data.run(data_config, {}, data_dir, StepContext("posttrain_data")))
    from factory.stage import Artifact

    data = Artifact(data_dir, {"fingerprint": "data", "kind": "conversations"})
    base = build_base(data_dir, work / "base", args.seed) if not (work / "base/model").exists() else \
        Artifact(work / "base", {"fingerprint": "base", "kind": "checkpoint"})

    sft_config = sft.Config(steps=args.sft_steps, micro_batch_size=args.sft_batch, lr=3e-3, warmup_steps=20, seq_len=128,
                            checkpoint_interval=0, switch_prompts=0, seed=args.seed)
    sft_out = work / "sft"
    if not (sft_out / "model").exists():  # --work reuses what an earlier run of the bench trained
        timed("sft", lambda: sft.run(sft_config, {"model": base, "data": data}, sft_out, StepContext("sft")))
    sft_ckpt = Artifact(sft_out, {"fingerprint": "sft", "kind": "checkpoint"})

    per_step = args.group_size * args.prompts_per_step
    grpo: dict[str, Path] = {}
    for rl_seed in [] if args.only_budget else args.rl_seeds:  # GRPO from the same SFT model, one run per seed (its rollouts' RNG)
        rl_config = rl.Config(steps=args.rl_steps, lr=args.rl_lr, micro_batch_size=per_step, checkpoint_interval=0,
                              verifiers=["math"], seed=rl_seed, kl_coef=args.kl_coef,
                              rollout={"group_size": args.group_size, "reasoning": "both",
                                       "target_entropy": args.target_entropy or None,
                                       "length_schedule": [{"until_fraction": 0.5, "max_new_tokens": args.max_new_tokens},
                                                           {"until_fraction": 1.0, "max_new_tokens": args.max_new_tokens + 16}]})
        rl_out = work / (f"rl-seed{rl_seed}" if rl_seed != args.seed else "rl")
        if not (rl_out / "model").exists():
            timed(f"rl seed {rl_seed}", lambda c=rl_config, o=rl_out: rl.run(c, {"model": sft_ckpt, "data": data}, o, StepContext("rl")))
        grpo[f"sft + grpo (seed {rl_seed})"] = rl_out

    models = {"base (random init)": base.path / "model", "sft": sft_out / "model",
              **{name: out / "model" for name, out in grpo.items()}}
    if args.only_budget:
        models = {}
    elif args.sft_more:
        # the SFT model trained on for as many optimizer steps as GRPO takes, at the SFT learning rate's tail
        more = sft_config.model_copy(update={"steps": args.rl_steps, "warmup_steps": 0, "lr": 3e-4})
        if not (work / "sft_more/model").exists():
            timed("sft_more", lambda: sft.run(more, {"model": sft_ckpt, "data": data}, work / "sft_more", StepContext("sft_more")))
        models[f"sft, {args.rl_steps} more steps"] = work / "sft_more" / "model"
    opd_name = None
    if args.opd and not args.only_budget:
        # on-policy distillation from a stronger teacher, the first seed's GRPO model, for as many steps and samples
        # per step as GRPO takes: the student's tokens are compared below
        if args.opd_teacher_steps:  # the stronger teacher: SFT from the same base for more steps
            teacher_out = work / f"sft_{args.opd_teacher_steps}"
            if not (teacher_out / "model").exists():
                longer = sft_config.model_copy(update={"steps": args.opd_teacher_steps})
                timed("sft (teacher)", lambda: sft.run(longer, {"model": base, "data": data}, teacher_out,
                                                       StepContext("sft_teacher")))
            teacher_name = f"sft teacher ({args.opd_teacher_steps} steps)"
            models[teacher_name] = teacher_out / "model"
        elif len(grpo) < 2:
            parser.error("--opd without --opd-teacher-steps needs two or more --rl-seeds: the first seed's GRPO model "
                         "is the teacher, the others are the GRPO runs it is compared with")
        else:
            teacher_name, teacher_out = next(iter(grpo.items()))
        opd_config = opd.Config(steps=args.rl_steps, lr=args.opd_lr, micro_batch_size=per_step, checkpoint_interval=0,
                                seed=args.seed, max_new_tokens=args.max_new_tokens + 16, reasoning="both")
        teacher = Artifact(teacher_out, {"fingerprint": "teacher", "kind": "checkpoint"})
        if not (work / "opd/model").exists():
            timed("opd", lambda: opd.run(opd_config, {"model": sft_ckpt, "teacher": teacher, "data": data}, work / "opd",
                                         StepContext("opd")))
        opd_name = "sft + opd"
        models[opd_name] = work / "opd" / "model"

    heldout = read_prompts(data_dir / "heldout.jsonl")
    trained = {p.question for p in read_prompts(data_dir / "prompts.jsonl")}
    repeated = sum(p.question in trained for p in heldout)  # the data stage drops held-out items from training: 0
    rows, verdicts = {}, {}
    with VerifierRewards(RewardConfig(math_workers=2)) as rewards:
        for name, model_dir in models.items():
            rows[name], verdicts[name] = timed(f"eval {name}", lambda d=model_dir: score(
                d, heldout, args.max_new_tokens + 16, rewards, args.samples, args.temperature))

    what = f"{args.terms}-term one-digit expressions ({' '.join(args.operators)})"
    if rows:
        print(f"\nheld-out {what}: {len(heldout)} prompts x 2 modes (seed {1_000_003 + args.seed}; training seed {args.seed}; "
              f"{repeated} of them also in training); math-verify on the final answer")
        print(f"greedy: one reply per prompt; pass@1: mean of {args.samples} samples per prompt at temperature {args.temperature}")
        print(f"{'model':<26} {'greedy (both modes)':>20} {'pass@1 (both modes)':>20} {'greedy on':>10} {'greedy off':>11} "
              f"{'<think> on':>11} {'<think> off':>12}")
        for name, r in rows.items():
            pass1 = f"{r['pass1']:>12.3f} ± {r['pass1_se']:.3f}" if args.samples else f"{'-':>20}"
            print(f"{name:<26} {r['acc']:>12.3f} ± {r['se']:.3f} {pass1} {r['acc_on']:>10.3f} {r['acc_off']:>11.3f} "
                  f"{r['think_on']:>11.0%} {r['think_off']:>12.0%}")
        measures = ["greedy", "sampled"] if args.samples else ["greedy"]
        print("\npaired differences on the same held-out items (both modes), greedy | pass@1:")
        pairs = [("base (random init)", "sft"), *[("sft", n) for n in grpo], *[("sft", n) for n in models if n.startswith("sft, ")]]
        for a, b in pairs:
            cells = [f"{m:+.3f} ± {se:.3f}" for m, se in (paired(verdicts[a][k], verdicts[b][k]) for k in measures)]
            print(f"  {b} - {a}: " + " | ".join(cells))
        if len(grpo) > 1:  # every seed's paired difference per item, averaged over seeds: the gain of GRPO as a recipe
            for k in measures:
                per_item = [sum(verdicts[n][k][i] for n in grpo) / len(grpo) - verdicts["sft"][k][i]
                            for i in range(len(verdicts["sft"][k]))]
                gains = [paired(verdicts["sft"][k], verdicts[n][k])[0] for n in grpo]
                m, se = mean_se(per_item)
                print(f"  sft + grpo (mean of {len(grpo)} seeds) - sft, {k}: {m:+.3f} ± {se:.3f} (item standard error; "
                      f"per seed {', '.join(f'{g:+.3f}' for g in gains)})")
                for more in [n for n in models if n.startswith("sft, ")]:  # against the alternative: as many more SFT steps
                    m, se = mean_se([sum(verdicts[n][k][i] for n in grpo) / len(grpo) - verdicts[more][k][i]
                                     for i in range(len(verdicts[more][k]))])
                    print(f"  sft + grpo (mean of {len(grpo)} seeds) - {more}, {k}: {m:+.3f} ± {se:.3f}")
    if opd_name is not None:
        baselines = [n for n in grpo if n != teacher_name]
        sampled = {n: per_step * sum(r["response_length"] for r in map(json.loads, (grpo[n] / "rollouts.jsonl").read_text().splitlines()))
                   for n in baselines}
        opd_records = [json.loads(line) for line in (work / "opd" / "opd.jsonl").read_text().splitlines()]
        print(f"\non-policy distillation from {teacher_name} (the teacher) against GRPO runs from the same SFT model, "
              f"{args.rl_steps} steps of {per_step} sampled completions each: student tokens sampled, opd "
              f"{per_step * sum(r['response_length'] for r in opd_records):.0f}, grpo "
              f"{', '.join(f'{v:.0f}' for v in sampled.values())} (GRPO's at least: dynamic sampling may draw more); "
              f"reverse KL to the teacher {opd_records[0]['reverse_kl']:.4g} (first step) -> {opd_records[-1]['reverse_kl']:.4g} (last)")
        for k in measures:
            for b in baselines:
                m, se = paired(verdicts[b][k], verdicts[opd_name][k])
                print(f"  {opd_name} - {b}, {k}: {m:+.3f} ± {se:.3f}")
            m, se = mean_se([verdicts[opd_name][k][i] - sum(verdicts[b][k][i] for b in baselines) / len(baselines)
                             for i in range(len(verdicts[opd_name][k]))])
            print(f"  {opd_name} - sft + grpo (mean of {len(baselines)} seeds), {k}: {m:+.3f} ± {se:.3f}")
            m, se = paired(verdicts[teacher_name][k], verdicts[opd_name][k])
            print(f"  {opd_name} - its teacher, {k}: {m:+.3f} ± {se:.3f}")
    budget_rows = {}
    if args.budget_control:
        budget_rows = budget_table(args, work, data_config, base, sft_config, sft_out, heldout, what, timed)
    summary = {}
    for name, out in grpo.items():
        result = json.loads((out / "rl.json").read_text())
        rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
        summary[name] = result
        print(f"\n{name} rollouts: reward {result['reward_first']:.3f} (first quarter) -> {result['reward_last']:.3f} "
              f"(last quarter); final temperature {rollouts[-1]['temperature']:.3f}, entropy {rollouts[-1]['entropy']:.3f}, "
              f"zero-variance groups {sum(r['zero_variance_fraction'] for r in rollouts) / len(rollouts):.2f} (mean)")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    (work / "bench.json").write_text(json.dumps({"rows": rows, "rl": summary, "budget": budget_rows, "seconds": timings}, indent=2))
    print(f"artifacts and rl.png under {work}")


if __name__ == "__main__":
    main()
