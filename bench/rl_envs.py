"""Per-environment held-out accuracy at tiny scale, on held-out pools no model here trained on: SFT, SFT trained on
for as many more steps as RL takes, one GRPO run over four environments at once, and the same environments trained
one after the other for as many total steps (the curriculum question: is one mixed run as good as the sequence?).

One run, on the same data: the posttrain_data stage writes procedural arithmetic in four families (reasoning-gym
`basic_arithmetic`: one-digit sums and differences of 3 or 4 terms, two-digit sums and differences of two terms)
with the procedural solver as teacher, in both reasoning modes; a tiny NemotronH (random init, a byte-level BPE
tokenizer with the chat markers) is fine-tuned by the sft stage on all four. From that SFT model, per `--seeds` seed:

- sft as long: the sft stage on for `--rl-steps` more steps on the same data (no reward: the control for "more
  steps");
- mixed: one rl step over the four environments, `--rl-steps` steps, equal weights;
- sequence: four rl steps, one environment each, `--rl-steps / 4` steps each, chained in the order listed.

Every model answers every environment's held-out pool (`--heldout` items from a seed training never uses, each
prompt unseen: factory.envs removes a candidate whose prompt is a training prompt and counts it; the bench checks the
pools against SFT's data too) greedily under `detailed thinking off`; accuracy (reward >= 1) with its standard error
over items, and the gains as the mean of per-seed differences with their standard error across seeds.

    .venv/bin/python bench/rl_envs.py --work runs/bench/rl_envs      # 17 min on 2 busy CPU cores (the table below)
    .venv/bin/python bench/rl_envs.py --sft-steps 200 --rl-steps 40 --heldout 100 --seeds 0 1   # a quick look

Measured with the defaults (SFT 500 steps of 16 conversations over the four families, 256 training prompts each;
SFT-as-long 120 more steps at lr 3e-4; GRPO: 4 prompts x 8 samples per step, lr 1e-4, fixed temperature 1, no KL;
mixed 120 steps, the sequence 30 steps per environment; seeds 0-3). Held-out pools: 500 per environment, none of
them a prompt any model here trained on (the library removed 24 training prompts and 31 repeats from 555 candidates
of each one-digit family, 15 and 19 from 534 of each two-digit one). Greedy accuracy +- standard error over items:

    model                     add34            sub34            add2d            sub2d            all (2000)
    sft                       0.052 +- 0.010   0.080 +- 0.012   0.000 +- 0.000   0.010 +- 0.004   0.035 +- 0.004
    sft as long, seed 0-3     0.050 0.032 0.060 0.032 | 0.100 0.092 0.076 0.096 | 0.002-0.008 | 0.004-0.010 | 0.034-0.041
    mixed, seed 0             0.120 +- 0.015   0.122 +- 0.015   0.002 +- 0.002   0.008 +- 0.004   0.063 +- 0.005
    mixed, seed 1             0.130 +- 0.015   0.120 +- 0.015   0.002 +- 0.002   0.006 +- 0.003   0.065 +- 0.005
    mixed, seed 2             0.106 +- 0.014   0.104 +- 0.014   0.002 +- 0.002   0.008 +- 0.004   0.055 +- 0.005
    mixed, seed 3             0.078 +- 0.012   0.106 +- 0.014   0.002 +- 0.002   0.006 +- 0.003   0.048 +- 0.005
    sequence, seed 0-3        0.054 0.050 0.052 0.034 | 0.028 0.016 0.028 0.028 | 0.000-0.006 | 0.000-0.008 | 0.018-0.022

    gains, paired on the same items: mean of the 4 per-seed differences +- standard error across seeds / over items
                        add34                    sub34                    add2d                    sub2d
    mixed - sft         +0.057 +- 0.011 / 0.011  +0.033 +- 0.005 / 0.011  +0.002 +- 0.000 / 0.001  -0.003 +- 0.001 / 0.005
    mixed - sft as long +0.065 +- 0.012 / 0.011  +0.022 +- 0.004 / 0.010  -0.003 +- 0.002 / 0.002  +0.001 +- 0.001 / 0.004
    mixed - sequence    +0.061 +- 0.008 / 0.013  +0.088 +- 0.007 / 0.012  -0.002 +- 0.001 / 0.001  +0.003 +- 0.002 / 0.003
    sequence - sft      -0.004 +- 0.005 / 0.012  -0.055 +- 0.003 / 0.014  +0.004 +- 0.001 / 0.002  -0.005 +- 0.002 / 0.005
    sft as long - sft   -0.009 +- 0.007 / 0.009  +0.011 +- 0.005 / 0.009  +0.005 +- 0.002 / 0.002  -0.004 +- 0.002 / 0.003
                        all (2000 items)
    mixed - sft         +0.022 +- 0.004 / 0.004      mixed - sequence    +0.037 +- 0.003 / 0.005
    mixed - sft as long +0.021 +- 0.004 / 0.004      sequence - sft      -0.015 +- 0.001 / 0.005
    sft as long - sft   +0.001 +- 0.002 / 0.003

The mixed run beats SFT, SFT-for-as-many-steps and the sequence beyond 2 standard errors (the larger of the two) on
the one-digit families and over all 2000 items; more SFT steps gain nothing (+0.001). On the two-digit families no
row moves: SFT answers 0-1% of them, so nearly every GRPO group of theirs is all wrong and gives no gradient (the
mixed runs' training reward over all four families goes 0.02-0.05 -> 0.06-0.08, first to last quarter of the steps);
RL cannot raise what the policy never samples right. The sequence ends below SFT: checked on seeds 0 and 1, its add34
leg lifts add34 to 0.11-0.13 and drops sub34 to 0.006, its sub34 leg brings sub34 back only to 0.03 and add34 down
to 0.05-0.08, and the two-digit legs, nearly without signal, still move both (add34 0.09-0.14 after add2d, 0.05 after
sub2d): one family's steps undo another's, which the mixed run, training them all in every step, does not suffer. Absolute
accuracies are low (the tiny model, 500 SFT steps); the gains are differences on the same unseen items.
Per-step held-out curves are the rl stage's `heldout_interval` (not used here: 2000 greedy episodes per point).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_base

ONE_DIGIT = {"min_digits": 1, "max_digits": 1, "allow_parentheses": False, "allow_negation": False}
TWO_DIGIT = {**ONE_DIGIT, "min_digits": 2, "max_digits": 2}
# Four families whose task spaces hold far more prompts than a training pool and a held-out pool together (about
# 11,000 one-digit expressions of 3 or 4 terms per operator, 8,100 two-digit pairs), and no prompt of one family is
# a prompt of another (their term counts, digits or operators differ).
FAMILIES = {
    "add34": {**ONE_DIGIT, "min_terms": 3, "max_terms": 4, "operators": ["+"]},
    "sub34": {**ONE_DIGIT, "min_terms": 3, "max_terms": 4, "operators": ["-"]},
    "add2d": {**TWO_DIGIT, "min_terms": 2, "max_terms": 2, "operators": ["+"]},
    "sub2d": {**TWO_DIGIT, "min_terms": 2, "max_terms": 2, "operators": ["-"]},
}


def environments(args) -> list[dict]:
    """The four environments, each with its held-out pool (unseen in training: factory.envs removes and counts a
    held-out candidate whose prompt is a training prompt)."""
    return [{"name": name, "procedural": {"generator": "basic_arithmetic", "size": args.train_size, "seed": args.seed,
                                          "params": params}, "heldout": args.heldout}
            for name, params in FAMILIES.items()]


def heldout_scores(model_dir: Path, envs: dict, max_new_tokens: int) -> dict[str, list[float]]:
    """Per environment, 1.0 or 0.0 per held-out item: one greedy episode each under `detailed thinking off`."""
    import torch
    from transformers import AutoTokenizer

    from factory.chat.records import system_prompt
    from factory.envs import guarded_step
    from factory.generate.groups import LocalSampler
    from factory.model.checkpoints import load_model

    model = load_model(model_dir).eval()
    sampler = LocalSampler(model, AutoTokenizer.from_pretrained(model_dir))
    out = {}
    for name, env in envs.items():
        episodes = [env.reset("heldout", i) for i in range(env.size("heldout"))]
        chats = [[{"role": "system", "content": system_prompt("off")}, *e.messages] for e in episodes]
        groups = sampler.sample(chats, 1, max_new_tokens, 0.0, torch.Generator().manual_seed(0))
        outcomes = guarded_step(env, episodes, [g[0].text for g in groups], trusted=True)
        out[name] = [float(o.reward is not None and o.reward >= 1.0) for o in outcomes]
    return out


def seen_prompts(data_dir: Path, envs: dict) -> set[str]:
    """Every prompt a model here trained on: the SFT data's user turns and prompts, and each environment's
    training pool (what RL samples)."""
    from factory.chat.records import read_conversations, read_prompts
    from factory.envs.environment import Task, prompt_key

    keys = {prompt_key(Task("", p.question, "", None)) for p in read_prompts(data_dir / "prompts.jsonl")}
    keys |= {prompt_key(Task("", m.content, "", None)) for c in read_conversations(data_dir / "train.jsonl")
             for m in c.messages if m.role == "user"}
    for env in envs.values():
        keys |= {prompt_key(env.reset("train", i).state) for i in range(env.size("train"))}
    return keys


def mean_se(x: list[float]) -> tuple[float, float]:
    m = sum(x) / len(x)
    return m, math.sqrt(sum((v - m) ** 2 for v in x) / max(1, len(x) - 1) / len(x))


def pm(mean: float, se: float, sign: bool = False) -> str:
    return f"{mean:+.3f} +- {se:.3f}" if sign else f"{mean:.3f} +- {se:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the artifacts (default: a temporary one); "
                                                                "a run reuses the models an earlier one left there.")
    parser.add_argument("--train-size", type=int, default=256, help="Training prompts per arithmetic family.")
    parser.add_argument("--heldout", type=int, default=500, help="Held-out items per environment (unseen in training).")
    parser.add_argument("--sft-steps", type=int, default=500)
    parser.add_argument("--rl-steps", type=int, default=120, help="Steps of the mixed run, and of SFT-as-long; the "
                                                                 "sequence runs a quarter of them per environment.")
    parser.add_argument("--rl-lr", type=float, default=1e-4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data, the base model and SFT.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="One mixed run, one sequence and one SFT-as-long per seed.")
    args = parser.parse_args()

    import torch

    from factory.envs import EnvironmentConfig, open_environment
    from factory.envs.environment import prompt_key
    from factory.envs.verifiers import RewardConfig, VerifierRewards
    from factory.stage import Artifact, StepContext
    from factory.stages import posttrain_data, rl, sft

    torch.set_num_threads(1)  # tiny matmuls gain nothing from a second thread on a shared machine
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-rl-envs-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - start
        print(f"{name}: {timings[name]:.0f} s", flush=True)
        return result

    data_dir = work / "data"
    data_config = posttrain_data.Config(procedural=[
        {"generator": "basic_arithmetic", "name": name, "size": args.train_size, "seed": args.seed, "params": params}
        for name, params in FAMILIES.items()])
    if not (data_dir / "stats.json").exists():
        timed("posttrain_data", lambda: posttrain_data.run(data_config, {}, data_dir, StepContext("posttrain_data")))
    data = Artifact(data_dir, {"fingerprint": "data", "kind": "conversations"})
    base = build_base(data_dir, work / "base", args.seed) if not (work / "base/model").exists() else \
        Artifact(work / "base", {"fingerprint": "base", "kind": "checkpoint"})
    sft_out = work / "sft"
    sft_config = sft.Config(steps=args.sft_steps, micro_batch_size=16, lr=3e-3, warmup_steps=min(20, args.sft_steps // 10),
                            seq_len=128, checkpoint_interval=0, seed=args.seed)
    if not (sft_out / "model").exists():
        timed("sft", lambda: sft.run(sft_config, {"model": base, "data": data}, sft_out, StepContext("sft")))
    sft_model = Artifact(sft_out, {"fingerprint": "sft", "kind": "checkpoint"})

    env_configs = environments(args)
    rl_base = {"lr": args.rl_lr, "micro_batch_size": args.prompts_per_step * args.group_size, "checkpoint_interval": 0,
               "log_reference_kl": False,
               "rollout": {"group_size": args.group_size, "reasoning": "off", "target_entropy": None,
                           "length_schedule": [{"until_fraction": 1.0, "max_new_tokens": args.max_new_tokens}]},
               "rewards": {"math_workers": 1}}
    # SFT-as-long: the SFT model trained on the same data for as many optimizer steps as a mixed run takes, at the
    # SFT learning rate's tail (no warmup), its data order from the seed: the control for "more steps, no reward"
    more = sft_config.model_copy(update={"steps": args.rl_steps, "warmup_steps": 0, "lr": 3e-4})
    models: dict[str, Path] = {"sft": sft_out / "model"}
    rl_rewards: dict[str, tuple[float, float]] = {}
    for seed in args.seeds:
        out = work / f"sft_long-{seed}"
        if not (out / "model").exists():
            config = more.model_copy(update={"seed": seed})
            timed(f"sft_long-{seed}", lambda c=config, o=out: sft.run(c, {"model": sft_model, "data": data}, o,
                                                                      StepContext("sft_long")))
        models[f"sft as long, seed {seed}"] = out / "model"
        out = work / f"mixed-{seed}"
        if not (out / "model").exists():
            config = rl.Config(**rl_base, steps=args.rl_steps, seed=seed, environments=[{**e, "heldout": 0} for e in env_configs])
            timed(f"mixed-{seed}", lambda c=config, o=out: rl.run(c, {"model": sft_model, "data": data}, o, StepContext("rl")))
        models[f"mixed, seed {seed}"] = out / "model"
        summary = json.loads((out / "rl.json").read_text())
        rl_rewards[f"mixed, seed {seed}"] = (summary["reward_first"], summary["reward_last"])
        previous = sft_model
        for env in env_configs:
            out = work / f"sequence-{seed}-{env['name']}"
            if not (out / "model").exists():
                config = rl.Config(**rl_base, steps=max(1, args.rl_steps // len(env_configs)), seed=seed,
                                   environments=[{**env, "heldout": 0}])
                timed(f"sequence-{seed}-{env['name']}",
                      lambda c=config, m=previous, o=out: rl.run(c, {"model": m, "data": data}, o, StepContext("rl")))
            previous = Artifact(out, {"fingerprint": out.name, "kind": "checkpoint"})
        models[f"sequence, seed {seed}"] = out / "model"

    with VerifierRewards(RewardConfig(math_workers=2)) as verifiers:
        envs = {e["name"]: open_environment(EnvironmentConfig(**e), verifiers=verifiers) for e in env_configs}
        splits = {name: env.heldout_split for name, env in envs.items()}
        # held out from everything trained on here: SFT's data and every environment's training pool
        seen = seen_prompts(data_dir, envs)
        leaks = {name: sum(prompt_key(env.reset("heldout", i).state) in seen for i in range(env.size("heldout")))
                 for name, env in envs.items()}
        scores = {name: timed(f"heldout {name}", lambda d=d: heldout_scores(d, envs, args.max_new_tokens))
                  for name, d in models.items()}
        for env in envs.values():
            env.close()

    names = list(envs)
    for per_env in scores.values():  # the four environments' items together (equal pools), as one more column
        per_env["all"] = [v for n in names for v in per_env[n]]
    cols = [*names, "all"]
    print("\nheld-out pools: " + "; ".join(
        f"{n} {s.posed} of {s.requested} asked ({s.in_training} training prompts and {s.repeated} repeats removed "
        f"from {s.drawn} drawn; {leaks[n]} seen by any model here)" for n, s in splits.items()))
    print("\nheld-out accuracy, greedy, detailed thinking off, +- standard error over items")
    print(f"{'model':28s}" + "".join(f"{n:>17s}" for n in cols))
    for model, per_env in scores.items():
        print(f"{model:28s}" + "".join(f"{pm(*mean_se(per_env[n])):>17s}" for n in cols))

    def gain(a: str, b: str, n: str) -> tuple[float, float, float]:
        """(a, seed s) - (b, seed s) (or the one SFT model) on the same items: the mean over seeds, its standard error
        across seeds (the runs' randomness) and over items (which items the pool drew: per item, the difference
        averaged over seeds)."""
        rows = [[x - y for x, y in zip(scores[f"{a}, seed {s}"][n], scores[f"{b}, seed {s}" if b != "sft" else "sft"][n])]
                for s in args.seeds]
        mean, over_seeds = mean_se([sum(r) / len(r) for r in rows])
        return mean, over_seeds, mean_se([sum(col) / len(col) for col in zip(*rows)])[1]

    comparisons = [("mixed - sft", "mixed", "sft"), ("mixed - sft as long", "mixed", "sft as long"),
                   ("mixed - sequence", "mixed", "sequence"), ("sequence - sft", "sequence", "sft"),
                   ("sft as long - sft", "sft as long", "sft")]
    gains = {label: {n: gain(a, b, n) for n in cols} for label, a, b in comparisons}
    print(f"\ngains over {len(args.seeds)} seeds, paired on the same items: mean of per-seed differences +- standard "
          "error across seeds / over items")
    print(f"{'':22s}" + "".join(f"{n:>25s}" for n in cols))
    for label, per_env in gains.items():
        print(f"{label:22s}" + "".join(f"{m:+.3f} +- {se:.3f} / {si:.3f}".rjust(25) for m, se, si in per_env.values()))

    if len(args.seeds) > 1:
        print("\nbeyond 2 standard errors (the larger of the two):")
        for label in ("mixed - sft", "mixed - sft as long", "mixed - sequence"):
            beyond = [n for n in cols if gains[label][n][0] > 2 * max(gains[label][n][1:])]
            below = [n for n in cols if gains[label][n][0] < -2 * max(gains[label][n][1:])]
            print(f"{label}: above on {beyond or 'none'}" + (f"; below on {below}" if below else ""))
        m, *ses = gains["mixed - sft as long"]["all"]
        if m <= 2 * max(ses):
            first = sum(r[0] for r in rl_rewards.values()) / len(rl_rewards)
            last = sum(r[1] for r in rl_rewards.values()) / len(rl_rewards)
            print(f"RL does NOT beat SFT-for-as-many-steps beyond 2 standard errors over all four environments "
                  f"({m:+.3f} +- {max(ses):.3f}). What the data shows: the mixed runs' training reward goes {first:.3f} "
                  f"-> {last:.3f} (first and last quarter of steps); RL moves held-out accuracy "
                  f"{gains['mixed - sft']['all'][0]:+.3f} from SFT and more SFT steps move it "
                  f"{gains['sft as long - sft']['all'][0]:+.3f}.")
    (work / "rl_envs.json").write_text(json.dumps(
        {"args": vars(args) | {"work": str(work)}, "timings": timings, "heldout_split": {n: vars(s) for n, s in splits.items()},
         "seen": leaks, "rl_rewards": rl_rewards, "scores": scores,
         "gains": {k: {n: list(v) for n, v in g.items()} for k, g in gains.items()}}, indent=1))
    print(f"\ntimings (s): {json.dumps({k: round(v) for k, v in timings.items()})}")


if __name__ == "__main__":
    main()
