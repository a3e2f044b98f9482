"""Shared fixtures: one intra-op thread for torch, a real S3 endpoint (moto's server mode on 127.0.0.1), and the
tiny artifacts (tests/builders) that tests in several folders only read, built once per session."""

from __future__ import annotations

import os
import sys

import pytest

from factory.stages import quality
from tests import builders

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

# the quality stage's fast settings: the two cheap classifiers, few hash buckets, few epochs and trees
TINY_QUALITY = {"classifiers": ["ngram", "features"], "ngram": {"n_features": 2**16, "epochs": 5}, "features": {"max_iter": 30}}


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from a second thread, and on a busy 2-core machine OpenMP spin-waiting costs 20x the
    CPU time: one intra-op thread keeps the suite fast and its timings stable, from the first fixture on (module
    fixtures that train included). Runs that never import torch do not pay for importing it here."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    yield
    if torch:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint: moto's HTTP server on a free loopback port, with test credentials."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"})
    yield f"http://{host}:{port}"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    import boto3

    name = "factory-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    """A pretraining lineage: corpus -> tokens (byte-level BPE of 2048 ids, a valid split with its bytes in stats.json)
    -> checkpoint (the tiny preset at that vocabulary with a 256-token context, random init)."""
    root = tmp_path_factory.mktemp("upstream")
    corpus = builders.corpus(root / "corpus")
    tok = builders.tokenizer("bpe", builders.random_sentences(400, seed=0), vocab_size=2048)
    valid = [" ".join(builders.random_sentences(4, seed=1000 + i)) for i in range(12)]
    tokens = builders.tokens(root / "tokens", tok, {"valid": valid}, corpus=corpus)
    return {"corpus": corpus, "tokens": tokens,
            "model": builders.checkpoint(root / "model", tok, builders.TINY_256, vocab_size=2048, inputs={"tokens": tokens})}


@pytest.fixture(scope="session")
def word_tokens(tmp_path_factory):
    """Learnable token data at a word-level vocabulary of 512 ids: 200 training and 20 validation documents, each one
    of 8 fixed 10-token phrases repeated."""
    train, valid = builders.learnable_docs(200, seed=0), builders.learnable_docs(20, seed=1)
    return builders.tokens(tmp_path_factory.mktemp("word_tokens"), builders.tokenizer("word"), {"train": train, "valid": valid})


@pytest.fixture(scope="session")
def chat_checkpoint(tmp_path_factory):
    """The tiny preset (random init) with the chat tokenizer of the additions data set (SFT's input model)."""
    return builders.checkpoint(tmp_path_factory.mktemp("chat_checkpoint"), builders.addition_tokenizer())


@pytest.fixture(scope="session")
def choice_policy(tmp_path_factory):
    """The tiny preset (random init) with the chat tokenizer of the choice prompts (RL's untrained policy)."""
    return builders.checkpoint(tmp_path_factory.mktemp("choice_policy"), builders.choice_tokenizer(), step="sft")


@pytest.fixture(scope="session")
def letter_policy(tmp_path_factory):
    """RL's input policy: answers a choice prompt with a random letter (tests/stages/rl/letter_policy.py)."""
    # imported here: the helper imports torch, which a run of light tests does not
    from tests.stages.rl.letter_policy import letter_policy

    return letter_policy(tmp_path_factory.mktemp("letter_policy"))


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    """A quality-stage artifact: the tiny ensemble (TINY_QUALITY) and the math classifier at its default settings,
    trained on stdlib docstrings against junk."""
    return builders.stage_output("quality", quality.Config(train=TINY_QUALITY, max_reference_docs=120), {},
                                 tmp_path_factory.mktemp("classifier"))
