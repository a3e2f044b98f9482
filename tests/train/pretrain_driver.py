"""Run the pretrain stage in its own process (plain `python` or under `torchrun`), for the tests that
need a real process: kill -9 and resume, and 2-rank DDP / FSDP2.

    python tests/train/pretrain_driver.py TOKENS_DIR OUT_DIR '{"steps": 6, ...}' [--step-sleep 0.05]
    torchrun --standalone --nproc-per-node 2 tests/train/pretrain_driver.py TOKENS_DIR OUT_A '{...}' OUT_B '{...}'

Several (OUT_DIR, CONFIG) pairs run one after the other in the same process(es): one start-up for all.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from factory.stage import Artifact, StepContext
from factory.stages import pretrain
from tests.kill9 import slow_steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tokens", type=Path)
    parser.add_argument("runs", nargs="+", help="OUT_DIR CONFIG_JSON pairs (pretrain.Config fields as JSON)")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the in-process tests: same kernels, bitwise-comparable losses
    slow_steps(args.step_sleep)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one group for all runs (re-joining env:// would hang)
        torch.distributed.init_process_group("gloo")
    for out, config in zip(args.runs[::2], args.runs[1::2]):
        Path(out).mkdir(parents=True, exist_ok=True)
        inputs = {"tokens": Artifact(args.tokens, {"fingerprint": "0" * 64})}
        result = pretrain.run(pretrain.Config(**json.loads(config)), inputs, Path(out), StepContext("pretrain"))
        print(json.dumps(result))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
