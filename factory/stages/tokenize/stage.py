"""The tokenize stage's `run`: survey the corpus, train the tokenizer (or take the `model` input's), write each split's
token data."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from tokenizers import Tokenizer
from transformers import AutoConfig, AutoTokenizer

from factory.artifacts import Checkpoint, Corpus
from factory.chat.template import with_chat_template
from factory.errors import InputError
from factory.stage import Artifact, StepContext
from factory.stages.tokenize.bpe import as_transformers, encode, train_bpe
from factory.stages.tokenize.config import Config
from factory.stages.tokenize.mixture import write_mixture
from factory.stages.tokenize.split import corpus_texts, survey_corpus, usable_records
from factory.tokens import (
    write_indexed,  # megatron-core: imported only when token data is written
)


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train the tokenizer on the corpus, encode every document, write train/valid token data."""
    corpus = inputs["corpus"]
    folder = Path(corpus.path) / "documents"
    files = Corpus.of(inputs, "corpus").files()

    # Pass 1: count, decide the split, pick the tokenizer's training sample.
    survey = survey_corpus(files, config)
    if survey["documents"] == 0:
        raise InputError(f"{folder}: no documents (expected *.jsonl.gz files of {{\"id\", \"text\"}} records)")
    ctx.log_dataset(
        name="corpus",
        uri=corpus.uri,
        digest=corpus.fingerprint,
        context="training",
        profile={"files": len(files), "documents": survey["documents"], "bytes": survey["bytes"],
                 "skipped": sum(survey["skipped"].values())},
    )
    ctx.log.info("corpus_read", files=len(files), documents=survey["documents"], skipped=dict(survey["skipped"]))

    # Pass 2: train the tokenizer on the sample, or take the `model` input's (an imported model's own).
    sample = survey["sample"]
    if "model" in inputs:
        tokenizer = AutoTokenizer.from_pretrained(Checkpoint.of(inputs, "model").model_dir, trust_remote_code=False)
        if not tokenizer.is_fast or tokenizer.eos_token_id is None:
            raise InputError(f"{inputs['model'].path}: tokenize writes with a fast tokenizer that has an EOS token; "
                             "the model's has not")
        backend, eos_id = tokenizer.backend_tokenizer, tokenizer.eos_token_id
        vocab_size = max(len(tokenizer), AutoConfig.from_pretrained(Checkpoint.of(inputs, "model").model_dir).vocab_size)
    else:
        texts = (text for doc_id, text in corpus_texts(files) if doc_id in sample)
        backend = train_bpe(texts, len(sample), config)
        tokenizer = as_transformers(backend, config)
        if config.chat_template:
            with_chat_template(tokenizer)  # saved as tokenizer/chat_template.jinja, so the release carries it
        vocab_size = len(tokenizer)
        if vocab_size != config.vocab_size:
            ctx.log.warning("vocab_smaller_than_configured", configured=config.vocab_size, trained=vocab_size)
        eos_id = backend.token_to_id(config.eos_token)
    tokenizer.save_pretrained(output / "tokenizer")

    # Passes 3-4: encode each split. Special-token strings inside web text stay plain text, so a page
    # that contains "<|endoftext|>" cannot forge a document boundary.
    backend.encode_special_tokens = True
    tally: Counter = Counter()  # UTF-8 bytes and tokens of the text (EOS excluded), for bytes_per_token
    counts = {}
    for split in ("train", "valid"):
        texts = (text for doc_id, text in corpus_texts(files) if survey["is_valid"](doc_id) == (split == "valid"))
        n_docs = survey["valid"] if split == "valid" else survey["documents"] - survey["valid"]
        docs = encode(backend, texts, eos_id, config.batch_size, tally, n_docs, desc=f"encode {split}")
        counts[split] = write_indexed(output / split, docs, vocab_size)
    synthetic = _write_synthetic(inputs.get("synthetic"), survey["is_valid"], backend, eos_id, vocab_size, config, output, ctx)
    # A corpus from the mix stage: one dataset per super-cluster, and its blend for pretrain.
    mixture = write_mixture(Path(corpus.path), files, survey["is_valid"],
                            lambda texts, desc: encode(backend, texts, eos_id, config.batch_size, Counter(), None, desc),
                            vocab_size, synthetic is not None, output)

    metrics = {
        "docs_train": counts["train"]["documents"],
        "docs_valid": counts["valid"]["documents"],
        "docs_skipped": sum(survey["skipped"].values()),
        "tokens_train": counts["train"]["tokens"],
        "tokens_valid": counts["valid"]["tokens"],
        "bytes_per_token": tally["bytes"] / max(tally["tokens"], 1),
        "vocab_size": vocab_size,
    }
    if synthetic is not None:
        metrics |= {"docs_synthetic": synthetic["documents"], "tokens_synthetic": synthetic["tokens"],
                    "synthetic_from_valid": synthetic["from_valid"]}
    stats = {
        "files": len(files),
        "documents": {"read": survey["documents"], "train": metrics["docs_train"], "valid": metrics["docs_valid"],
                      "tokenizer_sample": len(sample), "skipped": dict(sorted(survey["skipped"].items()))},
        "tokens": {"train": metrics["tokens_train"], "valid": metrics["tokens_valid"]},
        "bytes_per_token": metrics["bytes_per_token"],
        "vocab_size": vocab_size,
        "special_tokens": {tok: tokenizer.convert_tokens_to_ids(tok) for tok in
                           (tokenizer.all_special_tokens if "model" in inputs else config.special_tokens())},
        "eos_token_id": eos_id,
    }
    if synthetic is not None:
        stats["synthetic"] = synthetic
    if mixture is not None:
        stats["mixture"] = mixture["datasets"]
        metrics |= {f"tokens_{name}": c["tokens"] for name, c in mixture["datasets"].items()}
    (output / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    ctx.log.info("tokenized", **metrics)
    return {k: float(v) for k, v in metrics.items()}


def _write_synthetic(artifact: Artifact | None, is_valid, backend: Tokenizer, eos_id: int, vocab_size: int,
                     config: Config, output: Path, ctx: StepContext) -> dict | None:
    """Encode the synthetic documents into `synthetic.bin/.idx`, leaving out those written from held-out documents."""
    if artifact is None:
        return None

    files = Corpus(Path(artifact.path), "synthetic").checked().files()
    skipped: Counter = Counter()
    from_valid: Counter = Counter()

    def texts() -> Iterator[str]:
        for record in usable_records(files, skipped, config.max_error_fraction, "tokenize: synthetic corpus"):
            source = (record.get("metadata") or {}).get("source_id")
            if isinstance(source, str) and is_valid(source):
                from_valid["documents"] += 1
                continue
            yield record["text"]

    tally: Counter = Counter()
    docs = encode(backend, texts(), eos_id, config.batch_size, tally, None, "encode synthetic")
    counts = write_indexed(output / "synthetic", docs, vocab_size)
    ctx.log_dataset(name="synthetic", uri=artifact.uri, digest=artifact.fingerprint, context="training",
                    profile={"files": len(files), "documents": counts["documents"], "from_valid": from_valid["documents"]})
    return {"documents": counts["documents"], "tokens": counts["tokens"], "from_valid": from_valid["documents"],
            "skipped": dict(sorted(skipped.items()))}
