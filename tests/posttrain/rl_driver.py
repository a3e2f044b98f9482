"""Run the rl stage in its own process, for the kill -9 and resume test.

    python tests/posttrain/rl_driver.py MODEL_ARTIFACT DATA_ARTIFACT OUT_DIR '{"steps": 6, ...}' [--step-sleep 0.2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from factory.stages import rl
from factory.stage import Artifact, StepContext
from tests.kill9 import slow_steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("config")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the in-process run: same kernels, bitwise-comparable losses
    slow_steps(args.step_sleep)
    inputs = {"model": Artifact(args.model, {"fingerprint": "3" * 64}),
              "data": Artifact(args.data, {"fingerprint": "2" * 64})}
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(rl.run(rl.Config(**json.loads(args.config)), inputs, args.out, StepContext("rl"))))


if __name__ == "__main__":
    main()
