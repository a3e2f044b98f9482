"""Run the rl stage in its own process, for the kill -9 and resume test.

    python tests/posttrain/rl_driver.py MODEL_ARTIFACT DATA_ARTIFACT OUT_DIR '{"steps": 6, ...}' [--step-sleep 0.2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from factory.posttrain import rl
from factory.stage import Artifact, StepContext


class Sleep:
    """Slows each step down (a trainer callback), so that a test can kill the process mid-run reliably."""

    marks_progress = False

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_start(self, trainer) -> None: ...
    def on_train_end(self, trainer) -> None: ...

    def on_step_end(self, trainer, metrics) -> None:
        time.sleep(self.seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("config")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the in-process run: same kernels, bitwise-comparable losses
    if args.step_sleep:
        from factory.train.trainer import Trainer

        original = Trainer.__init__

        def init(self, *a, callbacks=(), **kw):
            original(self, *a, callbacks=[*callbacks, Sleep(args.step_sleep)], **kw)

        Trainer.__init__ = init  # type: ignore[method-assign]
    inputs = {"model": Artifact(args.model, {"fingerprint": "3" * 64}),
              "data": Artifact(args.data, {"fingerprint": "2" * 64})}
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(rl.run(rl.Config(**json.loads(args.config)), inputs, args.out, StepContext("rl"))))


if __name__ == "__main__":
    main()
