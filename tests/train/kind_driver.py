"""Run trainer kinds in their own process (plain `python`, or under `torchrun`), for the tests that need a real
process: kill -9 and resume, and 2-rank DDP / FSDP2. One driver for every kind that trains.

    python tests/train/kind_driver.py INPUTS_JSON KIND OUT_DIR CONFIG_JSON [KIND OUT_DIR CONFIG_JSON ...] [--step-sleep S]
    torchrun --standalone --nproc-per-node 2 tests/train/kind_driver.py INPUTS_JSON sft OUT '{...}' distill OUT '{...}'

INPUTS_JSON maps each kind to its inputs' folders ({"sft": {"model": DIR, "data": DIR}, ...}). The runs go one
after the other in the same process(es), so a torchrun launch starts once for all of them. `--step-sleep` slows
every step down (a callback added through the run context), so a test can kill the process mid-run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from factory.kinds import KINDS
from factory.stage import Artifact, StepContext
from factory.train.trainer import Callback


class Sleep(Callback):
    """Slows each step down, so that a test can kill the process mid-run reliably."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer, metrics) -> None:
        time.sleep(self.seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("inputs", help="kind -> input name -> folder, as JSON")
    parser.add_argument("runs", nargs="+", help="KIND OUT_DIR CONFIG_JSON triples")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the in-process tests: same kernels, bitwise-comparable losses
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one group for all runs (re-joining env:// would hang)
        torch.distributed.init_process_group("gloo")
    folders = json.loads(args.inputs)
    for kind, out, config in zip(args.runs[::3], args.runs[1::3], args.runs[2::3]):
        inputs = {name: Artifact(Path(folder), {"fingerprint": "0" * 64}) for name, folder in folders[kind].items()}
        ctx = StepContext(kind, callbacks=[Sleep(args.step_sleep)] if args.step_sleep else [])
        result = KINDS[kind].run(KINDS[kind].config(**json.loads(config)), inputs, Path(out), ctx)
        print(json.dumps(result))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
