"""Token data on disk: Megatron's indexed dataset (`.bin` + `.idx`), the packed training samples read from
it, and the tokenizer that wrote it. This is the tokens artifact's layout, shared by the stages that write
it (tokenize) and read it (pretrain, evaluate, release), as `factory.documents` is the corpus layout.

The format itself is megatron-core's (`megatron.core.datasets.indexed_dataset`); this module only adds
what the factory needs on top of it:

- `write_indexed`: one document per sequence, smallest token dtype, written atomically.
- `PackedSequences`: the documents packed end to end into one token stream, cut into fixed-length
  windows, memory-mapped and addressable by sample index (so a trainer resumes at an exact position).
- `load_tokenizer`: the artifact's `tokenizer/` folder, loaded offline.

    from factory.tokens import PackedSequences, load_tokenizer
    ds = PackedSequences("tokens/train", seq_len=256)
    window = ds[0]                       # LongTensor (257,)
    inputs, labels = window[:-1], window[1:]
    tokenizer = load_tokenizer("tokens")
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer

from factory.errors import InputError

__all__ = ["PackedSequences", "load_tokenizer", "write_indexed"]


def load_tokenizer(tokens_dir: str | Path) -> Any:
    """The tokenizer of a tokens artifact: its `tokenizer/` folder (transformers `save_pretrained`), never downloaded."""
    folder = Path(tokens_dir) / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        raise InputError(f"{folder}: no tokenizer.json; the tokens artifact must hold the tokenizer/ folder that "
                         "tokenize writes")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def write_indexed(prefix: str | Path, docs: Iterable[Sequence[int]], vocab_size: int) -> dict:
    """Write `prefix.bin` + `prefix.idx`, one document per sequence; return {"documents", "tokens"}.

    Token ids are stored in Megatron's choice of dtype for the vocabulary (uint16 below 65500 ids,
    int32 above). Both files are written under temporary names and renamed into place, the index
    last, so a reader never sees a half-written pair. An id outside [0, vocab_size) raises ValueError.
    """
    # megatron-core takes seconds to import: release (the tokenizer only) does not pay for it
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder, get_bin_path, get_idx_path

    prefix = str(prefix)
    dtype = DType.optimal_dtype(vocab_size)
    tmp = f"{prefix}.tmp-{os.getpid()}"
    tmp_bin, tmp_idx = get_bin_path(tmp), get_idx_path(tmp)
    builder = IndexedDatasetBuilder(tmp_bin, dtype=dtype)
    documents = tokens = 0
    try:
        for doc in docs:
            ids = np.asarray(doc, dtype=np.int64)  # (doc_len,)
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                raise ValueError(f"document {documents}: token id out of range [0, {vocab_size})")
            builder.add_document(ids, [ids.size])
            documents += 1
            tokens += ids.size
        builder.finalize(tmp_idx)
        os.replace(tmp_bin, get_bin_path(prefix))
        os.replace(tmp_idx, get_idx_path(prefix))
    except BaseException:
        builder.data_file.close()
        for path in (tmp_bin, tmp_idx):
            if os.path.exists(path):
                os.remove(path)
        raise
    return {"documents": documents, "tokens": tokens}


class PackedSequences(torch.utils.data.Dataset):
    """Fixed-length samples cut from all documents of an indexed dataset packed into one stream.

    The stream is the documents in order, end to end (each already ends with EOS). Sample `i` is the
    window `stream[i * seq_len : i * seq_len + seq_len + 1]`, so consecutive windows share one token
    and `inputs = w[:-1]`, `labels = w[1:]` cover every position of the stream once. A trailing partial
    window is dropped. Reads go through Megatron's memory-mapped reader; only the per-document start
    offsets (8 bytes per document) are held in memory.
    """

    def __init__(self, prefix: str | Path, seq_len: int) -> None:
        # megatron-core takes seconds to import: only code that reads token data pays for it.
        from megatron.core.datasets.indexed_dataset import IndexedDataset, get_bin_path

        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.prefix = str(prefix)
        self.seq_len = seq_len
        # numpy cannot memory-map an empty file, so a dataset with no tokens is read without mmap.
        mmap = os.path.getsize(get_bin_path(self.prefix)) > 0
        self._data = IndexedDataset(self.prefix, mmap=mmap)
        self._lengths = self._data.sequence_lengths  # (n_docs,) int32, memory-mapped
        ends = np.cumsum(self._lengths, dtype=np.int64)  # (n_docs,)
        self._starts = ends - self._lengths  # (n_docs,) first stream position of each document
        self.num_tokens = int(ends[-1]) if len(ends) else 0
        self.num_documents = len(self._lengths)

    def __len__(self) -> int:
        # Window i needs stream positions up to i * seq_len + seq_len (inclusive).
        return max(self.num_tokens - 1, 0) // self.seq_len

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample {index} out of range for {n} samples")
        pos = index * self.seq_len
        stop = pos + self.seq_len + 1
        doc = int(np.searchsorted(self._starts, pos, side="right")) - 1
        pieces = []
        while pos < stop:
            offset = pos - int(self._starts[doc])
            length = min(int(self._lengths[doc]) - offset, stop - pos)
            if length > 0:  # empty documents contribute nothing
                pieces.append(self._data.get(doc, offset=offset, length=length))
                pos += length
            doc += 1
        window = np.concatenate(pieces).astype(np.int64)  # (seq_len + 1,)
        return torch.from_numpy(window)
