"""The tokenize stage: train a byte-level BPE tokenizer on the corpus and write Megatron token data.

Input "corpus" (a curate artifact): `documents/*.jsonl.gz`, one {"id", "text", "metadata"} per line.
Optional input "synthetic" (a synth artifact, same layout; `metadata.source_id` names the corpus document
each synthetic one was written from).
Output:
    tokenizer/            transformers `save_pretrained` folder (bos/eos/pad/unk set)
    train.bin, train.idx  Megatron indexed dataset, one document per sequence, each ending with EOS
    valid.bin, valid.idx  held-out documents, chosen by a stable hash of the document id
    synthetic.bin, .idx   with a "synthetic" input: its documents, except those written from a held-out
                          document (that would leak valid text into training); pretrain's `blend` names
                          this dataset "synthetic" to mix it with "train", as Nemotron-CC blends real and
                          synthetic tokens
    stats.json            document and token counts, skipped records, special token ids

The tokenizer learns from real training documents only, so adding synthetic data does not change it.

Run alone (outside the pipeline):

    from factory.stage import Artifact, StepContext
    import factory.tokenize as tokenize
    tokenize.run(tokenize.Config(), {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("tokenize"))

The corpus is streamed several times (split and sample, tokenizer training, one encoding pass per
split) rather than held in memory, so its size is bounded by disk, not RAM.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import Field, model_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from factory.documents import document_files, read_records
from factory.errors import InputError
from factory.lazy import lazy_exports
from factory.logs import progress
from factory.stage import Artifact, StageConfig, StepContext, no_effect

__all__ = ["Config", "KIND", "run", "write_indexed", "PackedSequences"]


# megatron-core takes seconds to import; only code that touches token data should pay for it,
# not everything that merely reads this stage's Config.
__getattr__ = lazy_exports(__name__, {"write_indexed": "factory.tokenize.indexed", "PackedSequences": "factory.tokenize.indexed"})


KIND = "tokens"
_BYTE_ALPHABET = 256  # byte-level BPE starts from all 256 byte symbols


class Config(StageConfig):
    """Tokenizer training and token-data writing. Defaults are the smoke preset (tiny vocabulary)."""

    vocab_size: int = Field(2048, description="Vocabulary size, the 256 byte symbols and special tokens included.")
    min_frequency: int = Field(2, ge=1, description="A pair must occur at least this often to be merged.")
    bos_token: str = Field("<|endoftext|>", description="Beginning-of-sequence token (GPT-style: the same as EOS).")
    eos_token: str = Field("<|endoftext|>", description="End-of-sequence token, appended to every document.")
    pad_token: str = Field("<|pad|>", description="Padding token.")
    unk_token: str = Field("<|endoftext|>", description="Unknown token (byte-level BPE never emits it).")
    extra_special_tokens: tuple[str, ...] = Field((), description="More special tokens to reserve (e.g. chat markers).")
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of documents held out (by id hash).")
    seed: int = Field(0, description="Salt of the id hashes that pick the held-out split and the tokenizer's sample.")
    max_docs_for_training: int = Field(100_000, ge=1, description="Most training documents the tokenizer learns from.")
    batch_size: int = no_effect(1024, "Documents per encoding batch.")

    @model_validator(mode="after")
    def _vocab_fits(self) -> Config:
        floor = _BYTE_ALPHABET + len(self.special_tokens())
        if self.vocab_size <= floor:
            raise ValueError(f"vocab_size must exceed {floor} (256 bytes + special tokens), got {self.vocab_size}")
        return self

    def special_tokens(self) -> list[str]:
        """Special tokens in id order (first occurrence wins): eos gets id 0, then bos, unk, pad, extras."""
        tokens = [self.eos_token, self.bos_token, self.unk_token, self.pad_token, *self.extra_special_tokens]
        return list(dict.fromkeys(tokens))


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train the tokenizer on the corpus, encode every document, write train/valid token data."""
    if "corpus" not in inputs:
        raise InputError("tokenize needs an input named 'corpus' (a curate artifact)")
    corpus = inputs["corpus"]
    folder = Path(corpus.path) / "documents"
    files = document_files(corpus.path)

    # Pass 1: count, decide the split, pick the tokenizer's training sample.
    survey = _survey(files, config)
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

    # Pass 2: train the tokenizer on the sample.
    sample = survey["sample"]
    texts = (text for doc_id, text in _documents(files) if doc_id in sample)
    backend = _train_bpe(texts, len(sample), config)
    tokenizer = _wrap(backend, config)
    tokenizer.save_pretrained(output / "tokenizer")
    vocab_size = len(tokenizer)
    if vocab_size != config.vocab_size:
        ctx.log.warning("vocab_smaller_than_configured", configured=config.vocab_size, trained=vocab_size)

    from factory.tokenize.indexed import write_indexed

    # Passes 3-4: encode each split. Special-token strings inside web text stay plain text, so a page
    # that contains "<|endoftext|>" cannot forge a document boundary.
    backend.encode_special_tokens = True
    eos_id = backend.token_to_id(config.eos_token)
    tally: Counter = Counter()  # UTF-8 bytes and tokens of the text (EOS excluded), for bytes_per_token
    counts = {}
    for split in ("train", "valid"):
        texts = (text for doc_id, text in _documents(files) if survey["is_valid"](doc_id) == (split == "valid"))
        n_docs = survey["valid"] if split == "valid" else survey["documents"] - survey["valid"]
        docs = _encode(backend, texts, eos_id, config.batch_size, tally, n_docs, desc=f"encode {split}")
        counts[split] = write_indexed(output / split, docs, vocab_size)
    synthetic = _write_synthetic(inputs.get("synthetic"), survey["is_valid"], backend, eos_id, vocab_size, config, output, ctx)

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
        "special_tokens": {tok: tokenizer.convert_tokens_to_ids(tok) for tok in config.special_tokens()},
        "eos_token_id": eos_id,
    }
    if synthetic is not None:
        stats["synthetic"] = synthetic
    (output / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    ctx.log.info("tokenized", **metrics)
    return {k: float(v) for k, v in metrics.items()}


def _write_synthetic(artifact: Artifact | None, is_valid, backend: Tokenizer, eos_id: int, vocab_size: int,
                     config: Config, output: Path, ctx: StepContext) -> dict | None:
    """Encode the synthetic documents into `synthetic.bin/.idx`, leaving out those written from held-out documents."""
    if artifact is None:
        return None
    from factory.tokenize.indexed import write_indexed

    files = document_files(artifact.path)
    skipped: Counter = Counter()
    from_valid: Counter = Counter()

    def texts() -> Iterator[str]:
        for record in _records(files, skipped):
            source = (record.get("metadata") or {}).get("source_id")
            if isinstance(source, str) and is_valid(source):
                from_valid["documents"] += 1
                continue
            yield record["text"]

    tally: Counter = Counter()
    docs = _encode(backend, texts(), eos_id, config.batch_size, tally, None, "encode synthetic")
    counts = write_indexed(output / "synthetic", docs, vocab_size)
    ctx.log_dataset(name="synthetic", uri=artifact.uri, digest=artifact.fingerprint, context="training",
                    profile={"files": len(files), "documents": counts["documents"], "from_valid": from_valid["documents"]})
    return {"documents": counts["documents"], "tokens": counts["tokens"], "from_valid": from_valid["documents"],
            "skipped": dict(sorted(skipped.items()))}


def _unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for `parts` (sha256, so it depends on neither order nor process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _survey(files: list[Path], config: Config) -> dict:
    """Pass 1 over the corpus: counts, the validation rule, and the tokenizer's training sample.

    A document is held out when its id hashes below `valid_fraction`. Both splits are kept non-empty
    when the corpus allows it (a tiny corpus could otherwise hash every id to one side): the id with
    the smallest hash is forced into valid, the largest into train; which ids those are depends only
    on the set of ids, never on their order. The tokenizer sample is the `max_docs_for_training`
    training documents with the smallest second hash. Only ids of the sample are held in memory.
    """
    skipped: Counter = Counter()
    documents = n_bytes = hashed_valid = 0
    lowest: tuple[float, str] | None = None
    highest: tuple[float, str] | None = None
    heap: list[tuple[float, str]] = []  # max-heap (negated hashes) of the smallest sample hashes
    for doc_id, text in _documents(files, skipped):
        documents += 1
        n_bytes += len(text.encode("utf-8"))
        u = _unit_hash(config.seed, "split", doc_id)
        lowest = min(lowest or (u, doc_id), (u, doc_id))
        highest = max(highest or (u, doc_id), (u, doc_id))
        if u < config.valid_fraction:
            hashed_valid += 1
            continue
        item = (-_unit_hash(config.seed, "tokenizer", doc_id), doc_id)
        if len(heap) < config.max_docs_for_training:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)

    force_valid: set[str] = set()
    force_train: set[str] = set()
    if lowest and highest and lowest[1] == highest[1]:  # a single distinct id: it must train
        force_train.add(lowest[1])
    elif config.valid_fraction > 0 and lowest and highest:
        if lowest[0] >= config.valid_fraction:
            force_valid.add(lowest[1])
        if highest[0] < config.valid_fraction:
            force_train.add(highest[1])
    sample = {doc_id for _, doc_id in heap} - force_valid

    def is_valid(doc_id: str) -> bool:
        if doc_id in force_valid or doc_id in force_train:
            return doc_id in force_valid
        return _unit_hash(config.seed, "split", doc_id) < config.valid_fraction

    valid = hashed_valid
    if force_valid or force_train:  # only tiny corpora get here; recount, since an id may repeat
        valid = sum(is_valid(doc_id) for doc_id, _ in _documents(files))
    return {"documents": documents, "bytes": n_bytes, "valid": valid, "skipped": skipped,
            "is_valid": is_valid, "sample": sample}


def _records(files: list[Path], skipped: Counter) -> Iterator[dict]:
    """Every usable record (a dict with a string id and a non-empty text), in file then line order; bad
    records and unreadable files are counted in `skipped`."""
    for record in read_records(files, skipped):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            skipped["no_id"] += 1
        elif not isinstance(record.get("text"), str) or not record["text"]:
            skipped["no_text"] += 1
        else:
            yield record


def _documents(files: list[Path], skipped: Counter | None = None) -> Iterator[tuple[str, str]]:
    """(id, text) of every usable record, in file then line order; bad records are counted in `skipped`."""
    for record in _records(files, Counter() if skipped is None else skipped):
        yield record["id"], record["text"]


def _encode(backend: Tokenizer, texts: Iterator[str], eos_id: int, batch_size: int, tally: Counter,
            n_docs: int | None, desc: str) -> Iterator[list[int]]:
    """Token ids of each text followed by EOS, encoded in batches (the Rust side runs them in parallel)."""
    n_batches = None if n_docs is None else -(-n_docs // batch_size)
    for batch in progress(_batches(texts, batch_size), total=n_batches, desc=desc):
        for text, enc in zip(batch, backend.encode_batch(batch, add_special_tokens=False)):
            tally["bytes"] += len(text.encode("utf-8"))
            tally["tokens"] += len(enc.ids)
            yield [*enc.ids, eos_id]


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _train_bpe(texts: Iterator[str], n_texts: int, config: Config) -> Tokenizer:
    """GPT-2-style byte-level BPE: no normaliser, so decode(encode(text)) == text for any text."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=config.special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=n_texts)
    return tokenizer


def _wrap(backend: Tokenizer, config: Config):
    """The backend as a transformers tokenizer with its special tokens named."""
    from transformers import PreTrainedTokenizerFast

    named = {config.bos_token, config.eos_token, config.pad_token, config.unk_token}
    extra = [t for t in config.extra_special_tokens if t not in named]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=config.bos_token,
        eos_token=config.eos_token,
        pad_token=config.pad_token,
        unk_token=config.unk_token,
        extra_special_tokens=extra,
        clean_up_tokenization_spaces=False,  # the default cleanup rewrites " ." to "." and breaks round trips
    )
