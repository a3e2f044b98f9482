"""Token datasets of a mixed corpus: one per super-cluster, and the blend that mixes them.

A corpus from the mix stage carries `blend.json` (blend phases over dataset names) and, on every document,
`metadata.mix_dataset` (the dataset it belongs to, null when its cluster was pruned). Tokenize writes each
named dataset from that dataset's training documents (`NAME.bin/.idx`; held-out documents stay in `valid`
only) and copies `blend.json` beside them, where pretrain reads it when its own `blend` is not set.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from factory.errors import InputError
from factory.stages.tokenize.split import usable_records
from factory.tokens import write_indexed
from factory.train.config import Blend

__all__ = ["BLEND_FILE", "read_blend", "write_mixture"]

BLEND_FILE = "blend.json"
BUILTIN = ("train", "synthetic")  # datasets tokenize writes anyway


def read_blend(path: Path) -> list[dict]:
    """The blend phases of `path`, checked as pretrain's `blend` field (`factory.train.config.Blend`)."""
    try:
        phases = json.loads(path.read_text())
        Blend.model_validate({"blend": phases})
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not readable as JSON ({e})") from None
    except ValidationError as e:
        first = e.errors()[0]
        raise InputError(f"{path}: not a list of blend phases: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return phases


def write_mixture(corpus_dir: Path, files: list[Path], is_valid: Callable[[str], bool], encode_texts, vocab_size: int,
                  has_synthetic: bool, output: Path) -> dict | None:
    """Write the datasets the corpus' blend names and copy the blend; None for a corpus without one.

    `encode_texts(texts, desc)` turns texts into token-id documents (EOS appended).
    """
    path = Path(corpus_dir) / BLEND_FILE
    if not path.is_file():
        return None
    phases = read_blend(path)
    names = list(dict.fromkeys(name for phase in phases for name in phase["weights"]))
    if "synthetic" in names and not has_synthetic:
        raise InputError(f"{path}: the blend names dataset 'synthetic', but tokenize has no synthetic input; wire the "
                         "synth step into tokenize's `synthetic` input")
    counts = {}
    for name in names:
        if name in BUILTIN:
            continue

        def texts(name: str = name) -> Iterator[str]:
            for record in usable_records(files, Counter()):
                meta = record.get("metadata") or {}
                if isinstance(meta, dict) and meta.get("mix_dataset") == name and not is_valid(record["id"]):
                    yield record["text"]

        counts[name] = write_indexed(output / name, encode_texts(texts(), f"encode {name}"), vocab_size)
        if counts[name]["tokens"] == 0:
            raise InputError(f"{path}: the blend names dataset {name!r}, but no training document of the corpus has "
                             f"metadata.mix_dataset == {name!r}")
    (output / BLEND_FILE).write_text(json.dumps(phases, indent=2) + "\n")
    return {"datasets": counts, "phases": phases}
