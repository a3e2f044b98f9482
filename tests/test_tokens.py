"""Indexed token data: round trip through megatron-core's reader, and packed windows against a hand-made stream."""

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from megatron.core.datasets.indexed_dataset import IndexedDataset

from factory.tokens import PackedSequences, write_indexed


def _docs(seed: int, n: int, vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=int(rng.integers(1, 40))).tolist() for _ in range(n)]


@pytest.mark.parametrize(("vocab", "dtype"), [(2048, np.uint16), (100_000, np.int32)])
def test_round_trip_through_megatron_reader(tmp_path, vocab, dtype):
    docs = _docs(0, 25, vocab) + [[]] + [[vocab - 1, 0]]  # an empty document and the extreme ids
    counts = write_indexed(tmp_path / "train", docs, vocab_size=vocab)

    assert counts == {"documents": 27, "tokens": sum(map(len, docs))}
    ds = IndexedDataset(str(tmp_path / "train"))
    assert ds.index.dtype == dtype
    assert len(ds) == 27
    assert list(ds.document_indices) == list(range(28))  # one sequence per document
    assert [ds[i].tolist() for i in range(len(ds))] == docs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.bin", "train.idx"]  # no temp files left


def test_out_of_range_token_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match=r"document 1: token id out of range \[0, 10\)"):
        write_indexed(tmp_path / "bad", [[1, 2], [3, 10]], vocab_size=10)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_previous_files(tmp_path):
    write_indexed(tmp_path / "d", [[1, 2, 3]], vocab_size=10)
    write_indexed(tmp_path / "d", [[4], [5, 6]], vocab_size=10)
    assert [x.tolist() for x in IndexedDataset(str(tmp_path / "d"))] == [[4], [5, 6]]


def test_packed_windows_equal_the_stream_sliced_by_hand(tmp_path):
    docs = _docs(1, 30, 500)
    write_indexed(tmp_path / "train", docs, vocab_size=500)
    stream = np.concatenate(docs)  # (num_tokens,)
    seq_len = 16

    ds = PackedSequences(tmp_path / "train", seq_len=seq_len)

    assert ds.num_tokens == len(stream)
    assert len(ds) == (len(stream) - 1) // seq_len
    for i in range(len(ds)):
        window = ds[i]
        assert window.dtype == torch.int64 and window.shape == (seq_len + 1,)
        assert window.tolist() == stream[i * seq_len : i * seq_len + seq_len + 1].tolist()
    # consecutive windows overlap by one token, so labels of sample i continue into sample i + 1
    assert ds[0][-1] == ds[1][0]
    assert torch.equal(ds[-1], ds[len(ds) - 1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    # a trainer's DataLoader workers receive the dataset pickled
    assert torch.equal(pickle.loads(pickle.dumps(ds))[3], ds[3])


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=0, max_size=15), seq_len=st.integers(1, 9))
def test_packing_property(lengths, seq_len):
    stream = np.arange(sum(lengths)) % 97
    docs = np.split(stream, np.cumsum(lengths)[:-1]) if lengths else []
    with tempfile.TemporaryDirectory() as tmp:
        write_indexed(Path(tmp) / "d", docs, vocab_size=97)
        ds = PackedSequences(Path(tmp) / "d", seq_len=seq_len)
        assert len(ds) == max(len(stream) - 1, 0) // seq_len
        got = [ds[i].tolist() for i in range(len(ds))]
        del ds  # release the memory maps before the folder goes
    assert got == [stream[i * seq_len : i * seq_len + seq_len + 1].tolist() for i in range(len(got))]
