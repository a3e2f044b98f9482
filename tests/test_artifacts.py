"""Typed readers per artifact kind: layouts checked in one line naming the input, windows read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from factory.artifacts import READERS, Checkpoint, Corpus, Evaluation, Tokens, check_layout
from factory.errors import InputError
from factory.stage import Artifact
from factory.tokens import write_indexed


def _art(path: Path) -> Artifact:
    return Artifact(path, {"fingerprint": "f" * 64, "uri": str(path)})


def test_every_kind_a_stage_reads_has_a_reader():
    from factory.kinds import KINDS

    read = {i.kind for k in KINDS.values() for i in k.inputs.values()}
    # the quality ensemble ("classifier") is read by its own loader, factory.curate.quality.QualityEnsemble
    assert read - set(READERS) == {"classifier"}
    assert set(READERS) == {"corpus", "tokens", "checkpoint", "evaluation", "conversations"}


def test_tokens_windows_are_the_packed_stream(tmp_path):
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{}")
    docs = [list(range(1, 11)), list(range(20, 27))]  # 17 tokens
    write_indexed(tmp_path / "train", docs, vocab_size=64)
    tokens = Tokens.of({"tokens": _art(tmp_path)}, "tokens")
    windows = tokens.windows("train", seq_len=4)
    stream = torch.tensor([t for d in docs for t in d])
    # windows of seq_len + 1 tokens, consecutive windows sharing one token; a partial tail is dropped
    assert windows.dtype == torch.int64 and windows.shape == (4, 5)
    assert torch.equal(windows[1], stream[4:9]) and torch.equal(windows[3], stream[12:17])
    assert torch.equal(tokens.windows("train", seq_len=4, limit=2), windows[:2])
    with pytest.raises(InputError, match=r"valid\.bin: missing from input 'tokens' \(expected valid\.bin and valid\.idx\)"):
        tokens.split("valid")


@pytest.mark.parametrize("reader, part", [(Corpus, "documents"), (Tokens, "tokenizer/tokenizer.json"),
                                          (Checkpoint, "model/config.json"), (Evaluation, "eval.json")])
def test_a_folder_without_its_kinds_parts_is_one_line_naming_the_input(tmp_path, reader, part):
    with pytest.raises(InputError) as err:
        reader.of({"x": _art(tmp_path)}, "x")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / part}: missing; input 'x' must be a {reader.KIND} artifact")
    with pytest.raises(InputError, match=r"needs an input named 'y' \(a .* artifact\); got inputs \['x'\]"):
        reader.of({"x": _art(tmp_path)}, "y")
    with pytest.raises(InputError):
        check_layout(reader.KIND, tmp_path, "x")  # what the executor runs on every input before a stage starts
    check_layout("classifier", tmp_path, "x")  # kinds without a typed reader are not checked here


def test_checkpoint_and_evaluation_read_their_parts(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "eval.json").write_text(json.dumps({"metrics": {"valid_perplexity": 3.5}}))
    assert Checkpoint.of({"model": _art(tmp_path)}, "model").model_dir == tmp_path / "model"
    assert Evaluation.of({"e": _art(tmp_path)}, "e").results()["metrics"]["valid_perplexity"] == 3.5
    (tmp_path / "eval.json").write_text("{not json")
    with pytest.raises(InputError, match=r"eval\.json: not readable as JSON"):
        Evaluation.of({"e": _art(tmp_path)}, "e").results()
