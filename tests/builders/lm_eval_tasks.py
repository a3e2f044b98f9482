"""The lm-eval task builder: an lm-evaluation-harness task file (YAML) over local JSONL docs, as someone else writes
one; by default the held-out-style multiple-choice task whose prompt is the question alone (`{{question}}`), with
`choices` and an `answer` index, not the factory's `Question: ...\\nAnswer:`."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.builders.text import WORDS

HELDOUT = {"output_type": "multiple_choice", "doc_to_text": "{{question}}", "doc_to_choice": "choices",
           "doc_to_target": "answer", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}


def heldout_docs(n: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Docs of the held-out style: a question of six words, two to four choices of one to three words (so acc_norm's
    per-character lengths differ), the right one's index."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        choices = [" ".join(rng.sample(WORDS[2:30], rng.randint(1, 3))) for _ in range(rng.randint(2, 4))]
        docs.append({"question": " ".join(rng.sample(WORDS[2:30], 6)) + "?", "choices": choices,
                     "answer": rng.randrange(len(choices))})
    return docs


def lm_eval_task(folder: Path, name: str = "heldout_mc", docs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 **keys: Any) -> Path:
    """`folder/<name>.yaml` and one `<name>_<split>.jsonl` per split of `docs` (default: {"test": heldout_docs()}),
    the YAML holding the held-out-style task's keys (HELDOUT) updated by `keys` (None removes one), and data_files by
    absolute path, so lm-eval (which reads them from its working folder) and the factory (from the YAML's folder) read
    the same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splits = docs if docs is not None else {"test": heldout_docs()}
    files = {}
    for split, rows in splits.items():
        path = (folder / f"{name}_{split}.jsonl").resolve()
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        files[split] = str(path)
    definition = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files},
                  "test_split": "test" if "test" in files else None, **HELDOUT, **keys}
    task = folder / f"{name}.yaml"
    task.write_text(yaml.safe_dump({k: v for k, v in definition.items() if v is not None}, sort_keys=False))
    return task
