"""Session fixtures: tiny corpus -> tokens -> checkpoint artifacts, built once (see tiny_artifacts.py)."""

import pytest
from tiny_artifacts import corpus_artifact, model_artifact, tokens_artifact


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_upstream")
    corpus = corpus_artifact(root)
    tokens = tokens_artifact(root, corpus)
    return {"corpus": corpus, "tokens": tokens, "model": model_artifact(root, tokens)}
