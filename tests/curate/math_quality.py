"""One quality-stage artifact (tiny ensemble + the math classifier at its default settings) for the math tests,
trained once per test process and shared by tests/curate/test_math_chain.py and test_math_stage.py."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from factory.stages import quality as quality_stage
from factory.stage import NullTracker, StepContext

TINY_QUALITY = {"classifiers": ["ngram", "features"], "ngram": {"n_features": 2**16, "epochs": 5}, "features": {"max_iter": 30}}


@functools.cache
def quality_artifact() -> tuple[Path, dict[str, float]]:
    """(artifact folder, the quality stage's metrics); removed when the process exits."""
    out = Path(tempfile.mkdtemp(prefix="math-quality-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    metrics = quality_stage.run(quality_stage.Config(train=TINY_QUALITY, max_reference_docs=120), {}, out,
                                StepContext("quality", tracker=NullTracker()))
    return out, metrics
