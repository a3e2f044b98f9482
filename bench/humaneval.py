"""HumanEval's canonical solutions in the code sandbox: all must pass, and a broken variant of each must fail.

    python bench/humaneval.py                 # all 164 problems, bubblewrap against rlimits-only isolation
    python bench/humaneval.py --limit 20 --workers 4

Prints pass counts and problems per second for the bubblewrap sandbox and, on the same programs in the same
run, for `isolation: none` (rlimits and a clean environment only: what a user without the sandbox would run),
so the cost of isolation is visible.
"""

from __future__ import annotations

import argparse
import time

from factory.tasks.humaneval import broken, canonical, humaneval
from factory.verify.sandbox import SandboxConfig, run_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=164, help="problems to run (from the start)")
    parser.add_argument("--workers", type=int, default=2, help="sandboxes at a time")
    args = parser.parse_args()
    tasks = humaneval()[: args.limit]
    print("| isolation | canonical passed | broken failed | problems/s |\n|---|---|---|---|")
    for isolation in ("bwrap", "none"):
        config = SandboxConfig(isolation=isolation, timeout_s=20, cpu_s=10, memory_mb=1024)
        started = time.perf_counter()
        good = run_many([t.program(canonical(t)) for t in tasks], config, args.workers)
        bad = run_many([t.program(broken(t)) for t in tasks], config, args.workers)
        rate = 2 * len(tasks) / (time.perf_counter() - started)
        print(f"| {isolation} | {sum(v.passed for v in good)}/{len(tasks)} | "
              f"{sum(not v.passed for v in bad)}/{len(tasks)} | {rate:.1f} |")
        for task, verdict in zip(tasks, good):
            if not verdict.passed:
                print(f"  canonical {task.id} failed: {verdict.limit or verdict.stderr[-200:]}")
        for task, verdict in zip(tasks, bad):
            if verdict.passed:
                print(f"  broken {task.id} passed")


if __name__ == "__main__":
    main()
