"""Session fixtures: tiny corpus -> tokens -> checkpoint -> evaluation artifacts, and one release of them."""

import importlib.util
import sys
from pathlib import Path

import pytest

from factory import evaluate
from factory.stage import StepContext

# The artifact builders live beside the evaluate tests; load them by path (tests/ is not a package) under
# the same module name the evaluate tests import them by, so a full run holds one copy.
if "tiny_artifacts" in sys.modules:
    tiny_artifacts = sys.modules["tiny_artifacts"]
else:
    _spec = importlib.util.spec_from_file_location("tiny_artifacts", Path(__file__).parents[1] / "evaluate" / "tiny_artifacts.py")
    tiny_artifacts = sys.modules["tiny_artifacts"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(tiny_artifacts)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("release_upstream")
    corpus = tiny_artifacts.corpus_artifact(root)
    tokens = tiny_artifacts.tokens_artifact(root, corpus)
    model = tiny_artifacts.model_artifact(root, tokens)
    folder = root / "evaluation_art"
    folder.mkdir()
    config = evaluate.Config(seq_len=32, max_batches=2, max_new_tokens=4,
                             benchmarks=[evaluate.BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic",
                                                                  size=4, samples=2)],
                             generator=evaluate.GeneratorChoice(max_new_tokens=8, temperature=0.7))
    metrics = evaluate.run(config, {"model": model, "tokens": tokens}, folder, StepContext("evaluate"))
    m = tiny_artifacts.manifest(
        "evaluate", "evaluation", tiny_artifacts.fingerprint("evaluation"), {"model": model, "tokens": tokens}, metrics=metrics
    )
    evaluation = tiny_artifacts.write_manifest(folder, m)
    return {"root": root, "corpus": corpus, "tokens": tokens, "model": model, "evaluation": evaluation}
