"""Run the SFT stage in its own process, for the kill -9 and resume test.

    python tests/posttrain/sft_driver.py MODEL_DIR DATA_DIR OUT_DIR '{"steps": 12, ...}' [--step-sleep 0.1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from factory.stages import sft
from factory.stage import Artifact, StepContext
from tests.kill9 import slow_steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("config", help="sft.Config fields as JSON")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the in-process run: same kernels, bitwise-comparable losses
    slow_steps(args.step_sleep)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = {"model": Artifact(args.model, {"fingerprint": "b" * 64}), "data": Artifact(args.data, {"fingerprint": "c" * 64})}
    print(json.dumps(sft.run(sft.Config(**json.loads(args.config)), inputs, args.out, StepContext("sft"))))


if __name__ == "__main__":
    main()
