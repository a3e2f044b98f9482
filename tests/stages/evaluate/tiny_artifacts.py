"""Tiny, real upstream artifacts for the evaluate and release tests: a corpus manifest, a tokens artifact
(byte-level BPE tokenizer + Megatron valid split + stats.json) and a pretrain-like checkpoint (a random
`NemotronHForCausalLM` with a Mamba / attention / MLP pattern), each with a manifest shaped like the executor's.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import torch

from factory.stage import Artifact

WORDS = (
    "the a river city market people morning light water stone bridge garden teacher student book "
    "road house village quiet small large old new green blue walks reads builds finds carries opens "
    "near under over through before after slowly often always never and but because while"
).split()


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "." for _ in range(n)]


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def manifest(stage: str, kind: str, fp: str, inputs: dict[str, Artifact], *, sources=None, config=None, metrics=None) -> dict[str, Any]:
    """A manifest like the executor's: lineage is every ancestor, nearest first."""
    lineage: list[dict[str, Any]] = []
    for art in inputs.values():
        m = art.manifest
        for entry in [_entry(m), *m.get("lineage", [])]:
            if entry["fingerprint"] not in {e["fingerprint"] for e in lineage}:
                lineage.append(entry)
    return {
        "format": 1,
        "kind": kind,
        "stage": stage,
        "fingerprint": fp,
        "uri": f"s3://factory-test/{stage}/{fp[:16]}",
        "config": config or {},
        "inputs": {k: {key: a.manifest[key] for key in ("uri", "fingerprint", "kind", "stage")} for k, a in inputs.items()},
        "sources": sources or [],
        "lineage": lineage,
        "producer": {"factory_version": "0.1.0", "git_commit": "0" * 40, "mlflow_run_id": f"run-{stage}", "tracking_uri": "sqlite:///mlflow.db"},
        "metrics": metrics or {},
        "files": [],
    }


def _entry(m: dict[str, Any]) -> dict[str, Any]:
    """The lineage entry the executor records for an ancestor."""
    from factory.lineage import lineage_entry

    return lineage_entry(m)


def evaluation_artifact(root: Path, model: Artifact, tokens: Artifact, config) -> Artifact:
    """The evaluate stage run for real on `model` and `tokens` with `config`, published with a manifest."""
    from factory.stages import evaluate
    from factory.stage import NullTracker, StepContext

    folder = root / "evaluation_art"
    folder.mkdir()
    metrics = evaluate.run(config, {"model": model, "tokens": tokens}, folder, StepContext("evaluate", tracker=NullTracker()))
    m = manifest("evaluate", "evaluation", fingerprint("evaluation"), {"model": model, "tokens": tokens}, metrics=metrics)
    return write_manifest(folder, m)


def write_manifest(folder: Path, m: dict[str, Any]) -> Artifact:
    (folder / "manifest.json").write_text(json.dumps(m, indent=2))
    return Artifact(path=folder, manifest=m)


def corpus_artifact(root: Path) -> Artifact:
    """Only the manifest matters downstream (lineage, sources); no documents are written."""
    folder = root / "corpus_art"
    folder.mkdir()
    sources = [{"uri": "file:///data/raw/pages.warc.gz", "digest": "sha256:" + "a" * 64}]
    m = manifest("curate", "corpus", fingerprint("corpus"), {}, sources=sources, config={"sources": ["/data/raw"]}, metrics={"documents": 400.0})
    return write_manifest(folder, m)


def tokens_artifact(root: Path, corpus: Artifact, vocab_size: int = 2048) -> Artifact:
    """tokenizer/ (byte-level BPE, <pad>=0 <s>=1 </s>=2), valid.bin/.idx, stats.json with valid bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from factory.tokens import write_indexed

    folder = root / "tokens_art"
    folder.mkdir()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(sentences(400, seed=0), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(folder / "tokenizer")

    docs = [" ".join(sentences(4, seed=1000 + i)) for i in range(12)]
    ids = [tok(d).input_ids + [tok.eos_token_id] for d in docs]
    counts = write_indexed(folder / "valid", ids, vocab_size)
    stats = {"valid": {**counts, "bytes": sum(len(d.encode()) for d in docs)}}
    (folder / "stats.json").write_text(json.dumps(stats))
    m = manifest("tokenize", "tokens", fingerprint("tokens"), {"corpus": corpus}, config={"vocab_size": vocab_size}, metrics={"valid_tokens": float(counts["tokens"])})
    return write_manifest(folder, m)


def model_artifact(root: Path, tokens: Artifact, vocab_size: int = 2048, name: str = "model_art", base: Artifact | None = None) -> Artifact:
    """model/ holding a random tiny NemotronH (pattern M-*-, hidden 64); `base` makes it a fine-tune of another."""
    from transformers import NemotronHConfig, NemotronHForCausalLM

    folder = root / name
    folder.mkdir()
    cfg = NemotronHConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        layers_block_type=["linear_attention", "mlp", "full_attention", "mlp"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        ssm_state_size=16,
        mamba_num_heads=8,
        mamba_head_dim=16,
        n_groups=1,
        chunk_size=16,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    NemotronHForCausalLM(cfg).save_pretrained(folder / "model")
    inputs = {"tokens": tokens} if base is None else {"tokens": tokens, "model": base}
    m = manifest("pretrain", "checkpoint", fingerprint(name), inputs, config={"seq_len": 32}, metrics={"final_loss": 7.5})
    return write_manifest(folder, m)
