"""The tokenize stage run for real on a small corpus of English text (Python standard-library docstrings)."""

import gzip
import importlib
import inspect
import json
import random
from pathlib import Path

import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset
from transformers import AutoTokenizer

from factory.stages import tokenize
from factory.errors import InputError
from factory.stage import Artifact, StepContext
from factory.stages.tokenize.split import unit_hash
from factory.tokens import PackedSequences

MODULES = [
    "argparse", "base64", "calendar", "collections", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools",
    "getopt", "gzip", "heapq", "hmac", "inspect", "ipaddress", "json", "logging", "mailbox", "optparse",
    "os", "pathlib", "pickle", "pprint", "random", "shlex", "shutil", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "typing", "unittest.case",
    "urllib.parse", "uuid", "zipfile",
]
# The junk fixture has one damaged line among a few dozen (over the default 1% budget): allow 10% here.
CONFIG = tokenize.Config(vocab_size=1024, valid_fraction=0.1, max_error_fraction=0.1)


def _docstrings(name: str) -> str:
    module = importlib.import_module(name)
    parts = [inspect.getdoc(module) or ""]
    for _, member in sorted(vars(module).items()):
        if (inspect.isclass(member) or inspect.isfunction(member)) and getattr(member, "__module__", None) == name:
            parts.append(inspect.getdoc(member) or "")
    return "\n\n".join(p for p in parts if p)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    docs = [{"id": f"stdlib/{name}", "text": _docstrings(name), "metadata": {"source": name}} for name in MODULES]
    # a page that quotes the end-of-text marker must not gain a document boundary
    docs.append({"id": "quote", "text": "GPT-2 separates documents with <|endoftext|> in its data.", "metadata": {}})
    docs.append({"id": "chatml", "text": "ChatML opens a turn with <|im_start|>user and reasoning models write <think>.",
                 "metadata": {}})
    return docs


def _write_corpus(root: Path, records: list[dict], parts: int = 2, junk: bool = False) -> Artifact:
    folder = root / "documents"
    folder.mkdir(parents=True)
    for p in range(parts):
        lines = [json.dumps(r) for r in records[p::parts]]
        if junk and p == 0:
            lines += ["{not json", json.dumps({"id": "x", "metadata": {}}), json.dumps({"text": "no id"})]
        with gzip.open(folder / f"part-{p:05d}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return Artifact(root, {"fingerprint": "x" * 64, "uri": str(root)})


def _run(tmp: Path, records: list[dict], config=CONFIG, **corpus_kw) -> tuple[Path, dict, StepContext]:
    corpus = _write_corpus(tmp / "corpus", records, **corpus_kw)
    out = tmp / "out"
    out.mkdir()
    ctx = StepContext("tokenize")
    metrics = tokenize.run(config, {"corpus": corpus}, out, ctx)
    return out, metrics, ctx


@pytest.fixture(scope="module")
def stage(tmp_path_factory, records):
    return _run(tmp_path_factory.mktemp("tok"), records, junk=True)


def test_tokenizer_round_trips_and_has_configured_vocab(stage, records):
    out, metrics, _ = stage
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")

    assert len(tok) == CONFIG.vocab_size == metrics["vocab_size"]
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("<|endoftext|>", "<|endoftext|>", "<|pad|>")
    assert tok.eos_token_id == 0 and tok.pad_token_id == 1
    for text in [records[0]["text"], "Hello , world . ( spaces )  \n\n\ttabs", "naïve café – 日本語 🙂"]:
        ids = tok(text)["input_ids"]
        assert tok.eos_token_id not in ids  # nothing added implicitly
        assert tok.decode(ids) == text
    # trained merges compress English: well above one byte per token
    assert 2.0 < metrics["bytes_per_token"] < 6


def test_token_files_hold_every_document_once_ending_with_eos(stage, records):
    out, metrics, _ = stage
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    decoded = []
    for split in ("train", "valid"):
        ds = IndexedDataset(str(out / split))
        assert len(ds) == metrics[f"docs_{split}"]
        assert sum(int(n) for n in ds.sequence_lengths) == metrics[f"tokens_{split}"]
        for i in range(len(ds)):
            ids = ds[i].tolist()
            assert ids[-1] == tok.eos_token_id and tok.eos_token_id not in ids[:-1]
            decoded.append(tok.decode(ids[:-1]))

    assert metrics["docs_train"] + metrics["docs_valid"] == len(records)
    assert metrics["docs_valid"] >= 1 and metrics["docs_train"] > metrics["docs_valid"]
    assert sorted(decoded) == sorted(r["text"] for r in records)
    assert metrics["docs_skipped"] == 3

    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"]["skipped"] == {"bad_json": 1, "no_id": 1, "no_text": 1}
    assert stats["tokens"] == {"train": metrics["tokens_train"], "valid": metrics["tokens_valid"]}
    packed = PackedSequences(out / "train", seq_len=32)
    assert packed.num_tokens == metrics["tokens_train"]


def test_corpus_logged_as_dataset(stage, records):
    out, _, ctx = stage
    [logged] = ctx.tracker.datasets
    assert logged["name"] == "corpus" and logged["context"] == "training"
    assert logged["digest"] == "x" * 64 and logged["uri"] == str(out.parent / "corpus")
    assert logged["profile"]["documents"] == len(records) and logged["profile"]["files"] == 2


def test_same_input_gives_same_bytes_and_split_ignores_order(stage, records, tmp_path):
    out, metrics, _ = stage
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    again, metrics2, _ = _run(tmp_path, shuffled, parts=3, junk=True)

    assert metrics2 == metrics
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    valid = lambda folder: sorted(tok.decode(x.tolist()) for x in IndexedDataset(str(folder / "valid")))  # noqa: E731
    assert valid(again) == valid(out)  # the held-out documents do not depend on file layout or order

    # identical input (same files, same order) gives identical bytes in every output file
    third, _, _ = _run(tmp_path / "third", records, junk=True)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert [str(f) for f in files] == sorted(str(p.relative_to(third)) for p in third.rglob("*") if p.is_file())
    for f in files:
        assert (third / f).read_bytes() == (out / f).read_bytes(), f


def test_empty_corpus_names_the_folder(tmp_path):
    (tmp_path / "documents").mkdir()
    with pytest.raises(InputError, match=str(tmp_path / "documents")):
        tokenize.run(CONFIG, {"corpus": Artifact(tmp_path, {"fingerprint": "x" * 64})}, tmp_path, StepContext("t"))


def test_config_rejects_a_vocab_smaller_than_the_byte_alphabet():
    with pytest.raises(ValueError, match="vocab_size must exceed 264"):  # 256 bytes, 2 named + 6 chat tokens
        tokenize.Config(vocab_size=200)
    with pytest.raises(ValueError, match="chat_template needs the chat markers"):
        tokenize.Config(extra_special_tokens=())
    assert "batch_size" not in CONFIG.result_fields()


def test_single_document_corpus_trains_and_holds_out_nothing(tmp_path, records):
    out, metrics, _ = _run(tmp_path, records[:1], config=CONFIG.model_copy(update={"vocab_size": 300}), parts=1)
    assert (metrics["docs_train"], metrics["docs_valid"], metrics["tokens_valid"]) == (1, 0, 0)
    assert len(PackedSequences(out / "valid", seq_len=8)) == 0


def test_synthetic_input_becomes_its_own_dataset_without_valid_leaks(tmp_path, records):
    corpus = _write_corpus(tmp_path / "corpus", records)
    plain = tmp_path / "plain"
    plain.mkdir()
    tokenize.run(CONFIG, {"corpus": corpus}, plain, StepContext("tokenize"))
    valid_ids = [r["id"] for r in records if unit_hash(CONFIG.seed, "split", r["id"]) < CONFIG.valid_fraction]
    train_ids = [r["id"] for r in records if r["id"] not in valid_ids]
    assert valid_ids and train_ids
    synthetic = [{"id": f"syn/{i}", "text": f"Question: what does {src} do?\nAnswer: it is documented in the library.",
                  "metadata": {"source_id": src, "task": "diverse_qa"}} for i, src in enumerate(train_ids[:5] + valid_ids[:2])]
    syn = _write_corpus(tmp_path / "synth", synthetic, parts=1)
    out = tmp_path / "out"
    out.mkdir()
    metrics = tokenize.run(CONFIG, {"corpus": corpus, "synthetic": syn}, out, StepContext("tokenize"))

    # the real splits and the tokenizer do not change when synthetic data is added
    for name in ("train.bin", "train.idx", "valid.bin", "valid.idx", "tokenizer/tokenizer.json"):
        assert (out / name).read_bytes() == (plain / name).read_bytes(), name
    assert metrics["docs_synthetic"] == 5 and metrics["synthetic_from_valid"] == 2
    ds = IndexedDataset(str(out / "synthetic"))
    assert len(ds) == 5
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    eos = tok.convert_tokens_to_ids(CONFIG.eos_token)
    assert [tok.decode(ds[i][:-1]) for i in range(5)] == [d["text"] for d in synthetic[:5]]
    assert all(int(ds[i][-1]) == eos for i in range(5))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["synthetic"] == {"documents": 5, "tokens": metrics["tokens_synthetic"], "from_valid": 2, "skipped": {}}


def test_damaged_lines_past_the_error_budget_fail_with_one_line(tmp_path, records):
    from factory.errors import InputError

    with pytest.raises(InputError) as err:
        _run(tmp_path, records, config=CONFIG.model_copy(update={"max_error_fraction": 0.01}), junk=True)
    message = str(err.value)
    assert "\n" not in message and "tokenize: corpus" in message
    assert "bad_json 1" in message and "part-00000.jsonl.gz line" in message
    assert not (tmp_path / "out" / "train.bin").exists()  # nothing written before the corpus was surveyed


def test_tokenizer_carries_the_chat_template(stage):
    """The saved tokenizer renders chats with the factory's template, the markers are single special ids, and
    the same marker strings inside web text stay plain text in the token data."""
    from factory.chat.template import CHAT_TEMPLATE, CHAT_TOKENS

    out, _, _ = stage
    assert (out / "tokenizer" / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    specials = [tok.convert_tokens_to_ids(t) for t in CHAT_TOKENS]
    assert specials == list(range(2, 8))  # after <|endoftext|> (0) and <|pad|> (1)
    messages = [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "<think>\nadd\n</think>\n\n5"}]
    out_ids = tok.apply_chat_template(messages, enable_thinking=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out_ids["input_ids"], out_ids["assistant_masks"]
    assert tok.decode(ids).startswith("<|im_start|>system\ndetailed thinking on<|im_end|>\n<|im_start|>user\n")
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "<think>\nadd\n</think>\n\n5<|im_end|>"
    for split in ("train", "valid"):
        ds = IndexedDataset(str(out / split))
        assert not any(set(ds[i].tolist()) & set(specials) for i in range(len(ds)))
