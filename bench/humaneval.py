"""HumanEval's canonical solutions in the code sandbox: all must pass, and a broken variant of each must fail.

    python bench/humaneval.py                 # all 164 problems, each way of running them, side by side
    python bench/humaneval.py --limit 20 --workers 4
    python bench/humaneval.py --model runs/smoke/release/<fingerprint> --limit 40 --samples 10

Prints pass counts and problems per second, on the same programs in the same run, for:
- `none, exit status`: rlimits and a clean environment only (what a user without the sandbox would run), solution
  and tests as one program judged by its exit status;
- `bwrap, exit status, rlimits`: the bubblewrap sandbox (tmpfs, seccomp) with per-process limits only, one program
  judged by its exit status: how the verifier ran before the test harness and the per-sandbox cgroup;
- `bwrap, exit status`: the same with the sandbox's cgroup (memory and processes of the whole sandbox), where one
  can be made here (the `scopes` column says what held);
- `bwrap, test harness`: what the verifiers run (`run_tests`): the cgroup, and every test statement reported run to
  its end on the harness's channel.
So the cost of each cap on the normal path is visible.

With `--model FOLDER` (a released model, e.g. the smoke run's) it also scores that model: `--samples`
completions per problem at temperature 0.8, each run against the problem's tests in the sandbox, and prints
pass@1 (averaged over the samples) and pass@k with their standard errors, and how many prompts did not fit the
model's context (scored wrong, counted).
"""

from __future__ import annotations

import argparse
import time

from factory.tasks.humaneval import broken, canonical, humaneval
from factory.verify.sandbox import SandboxConfig, run_many, run_many_tests


def score_model(folder: str, limit: int, samples: int, max_new_tokens: int, workers: int) -> None:
    """pass@1 and pass@k of the model in `folder` on the first `limit` HumanEval problems."""
    from factory.stages.evaluate.benchmarks import BenchmarkConfig, run_benchmark
    from factory.generate import GenerationParams, TransformersGenerator
    from factory.verify.math_answer import MathVerifier

    bench = BenchmarkConfig(name="humaneval", source="humaneval", limit=limit, samples=samples)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95, seed=0)
    sandbox = SandboxConfig(isolation="bwrap", timeout_s=20, cpu_s=10, memory_mb=1024)
    generator = TransformersGenerator(folder, batch_size=16)
    started = time.perf_counter()
    with MathVerifier(workers=1) as verifier:
        result = run_benchmark(bench, generator, params, sandbox, verifier)
    m = result.metrics
    k = samples
    print(f"\n{folder}: {int(m['humaneval_items'])} problems x {k} samples, {max_new_tokens} new tokens, "
          f"{time.perf_counter() - started:.0f} s")
    print(f"| pass@1 | pass@{k} | prompts past the context | completions that do not compile or run |\n|---|---|---|---|")
    print(f"| {m['humaneval_pass@1']:.4f} ± {m['humaneval_pass@1_stderr']:.4f} | "
          f"{m.get(f'humaneval_pass@{k}', float('nan')):.4f} ± {m.get(f'humaneval_pass@{k}_stderr', float('nan')):.4f} | "
          f"{int(m['humaneval_unanswered'])} | {int(m['humaneval_malformed'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=164, help="problems to run (from the start)")
    parser.add_argument("--workers", type=int, default=2, help="sandboxes at a time")
    parser.add_argument("--model", help="also score this released model folder (pass@1, pass@k)")
    parser.add_argument("--samples", type=int, default=10, help="completions per problem for --model (k of pass@k)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens per completion for --model")
    args = parser.parse_args()
    tasks = humaneval()[: args.limit]
    good_cases = [t.case(canonical(t)) for t in tasks]
    bad_cases = [t.case(broken(t)) for t in tasks]
    base = SandboxConfig(timeout_s=20, cpu_s=10, memory_mb=1024)
    ways = [
        ("none, exit status", base.model_copy(update={"isolation": "none", "cgroup": False}), run_many),
        ("bwrap, exit status, rlimits", base.model_copy(update={"cgroup": False}), run_many),
        ("bwrap, exit status", base, run_many),
        ("bwrap, test harness", base, run_many_tests),
    ]
    print("| way | canonical passed | broken failed | problems/s | scopes |\n|---|---|---|---|---|")
    for name, config, run in ways:
        if run is run_many:  # solution and tests as one program
            good_in, bad_in = [s + "\n" + t for s, t in good_cases], [s + "\n" + t for s, t in bad_cases]
        else:
            good_in, bad_in = good_cases, bad_cases
        started = time.perf_counter()
        good = run(good_in, config, args.workers)
        bad = run(bad_in, config, args.workers)
        rate = 2 * len(tasks) / (time.perf_counter() - started)
        scopes = ", ".join(f"{k} {v}" for k, v in good[0].scopes.items())
        print(f"| {name} | {sum(v.passed for v in good)}/{len(tasks)} | "
              f"{sum(not v.passed for v in bad)}/{len(tasks)} | {rate:.1f} | {scopes} |")
        for task, verdict in zip(tasks, good):
            if not verdict.passed:
                print(f"  canonical {task.id} failed: {verdict.limit or verdict.stderr[-200:]}")
        for task, verdict in zip(tasks, bad):
            if verdict.passed:
                print(f"  broken {task.id} passed")
    if args.model:
        score_model(args.model, args.limit, args.samples, args.max_new_tokens, args.workers)


if __name__ == "__main__":
    main()
