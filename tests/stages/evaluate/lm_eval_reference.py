"""lm-evaluation-harness itself, run offline: its HF model class on a saved model folder (on the device the evaluate
stage picks, so both compute alike), its task manager on a folder of task files, its default few-shot seed. The reference the factory's likelihood scores are checked against.

    theirs = lm_eval_scores(model_dir, tokenizer_dir, [task_yaml, ...])
    theirs["heldout_mc"]["acc,none"], theirs["heldout_mc"]["loglikelihoods"][doc_id]
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def lm_eval_scores(model_dir: Path, tokenizer_dir: Path, tasks: list[Path], batch_size: int = 4) -> dict[str, dict[str, Any]]:
    """{task: lm-eval's results ("acc,none", "acc_stderr,none", ...) plus, per doc in doc order, its "contexts" and
    "loglikelihoods" (one per continuation)}."""
    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    # imported here: lm-eval is a test extra, and the tests that use it skip without it
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="lm-eval-tasks-") as folder:
        for task in tasks:  # only these files: the task manager indexes every YAML under its include path
            shutil.copy(task, Path(folder) / Path(task).name)
        manager = TaskManager(include_path=folder, include_defaults=False)
        names = list(manager.all_tasks)
        lm = HFLM(pretrained=str(model_dir), tokenizer=str(tokenizer_dir), device="cuda" if torch.cuda.is_available() else "cpu",
                  batch_size=batch_size)
        result = simple_evaluate(model=lm, tasks=names, task_manager=manager, log_samples=True)
    out = {}
    for name in names:
        samples = sorted(result["samples"][name], key=lambda s: s["doc_id"])
        out[name] = {**result["results"][name],
                     "contexts": [_context(s["arguments"]) for s in samples],
                     "loglikelihoods": [[float(r[0]) for r in s["filtered_resps"]] for s in samples]}
    return out


def _context(arguments: Any) -> str:
    """A logged sample's context: its first request's (a multiple-choice sample logs {"gen_args_0": {"arg_0": ...}},
    a loglikelihood one [(context, continuation)])."""
    return arguments["gen_args_0"]["arg_0"] if isinstance(arguments, dict) else arguments[0][0]
