"""Evaluation sets: the built-in stdlib cloze file (format, reproduction, no overlap with the smoke corpus),
likelihood scoring checked against a direct log_softmax on a tiny random NemotronH, and the stage's report."""

import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.curate.decontaminate import NgramIndex
from factory.errors import InputError, SpecError
from factory.stages.evaluate import Config, run
from factory.tasks.builtin import builtin_eval_items
from factory.tasks.sets import TaskItem, builtin_path, builtin_sets, read_set
from factory.stages.evaluate.tasks import encode_item, score_set
from factory.stage import NullTracker, StepContext
from tests.builders import random_sentences

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lm(upstream):
    model = AutoModelForCausalLM.from_pretrained(upstream["model"].path / "model").eval()
    return model, AutoTokenizer.from_pretrained(upstream["tokens"].path / "tokenizer")


def test_builtin_cloze_items_are_last_word_passages():
    assert builtin_sets() == ["stdlib_cloze"]
    lines = builtin_path("stdlib_cloze").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert 100 <= len(rows) <= 200
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"id", "source", "context", "target"}
        word = r["target"][1:]
        assert r["target"] == " " + word and word.isalpha() and word.islower()
        assert len(r["context"].split()) >= 20
        assert word in r["context"].lower()  # LAMBADA-style: the answer can be read from the passage
    assert [(i.id, i.context, i.target) for i in read_set(builtin_path("stdlib_cloze"))] == [
        (r["id"], r["context"], r["target"]) for r in rows]


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the committed set was made from Python 3.11's stdlib")
def test_make_reproduces_the_committed_file_byte_for_byte():
    from factory.tasks.sets.make import build_stdlib_cloze, render

    assert render(build_stdlib_cloze()) == builtin_path("stdlib_cloze").read_text(encoding="utf-8")


def test_builtin_set_shares_no_13_gram_with_the_smoke_corpus_prose():
    # otherwise decontaminating the smoke corpus would drop its pages
    from factory.data.smoke_corpus import stdlib_blocks

    index = NgramIndex(builtin_eval_items(), n_gram=13, min_item_words=8)
    assert index.items >= 100
    assert [b for blocks in stdlib_blocks().values() for b in blocks if index.match(b)] == []


def _direct(model, ids, n_target):
    """Sum of the target tokens' log-probabilities and whether each is the argmax, for one unpadded sequence."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0]  # (L - 1, V)
    logprobs = torch.log_softmax(logits.float(), dim=-1)[-n_target:]  # (n, V)
    target = torch.tensor(ids[-n_target:])
    return logprobs.gather(1, target[:, None]).sum().item(), bool((logprobs.argmax(-1) == target).all())


def test_target_logprob_matches_a_direct_log_softmax(lm):
    model, tok = lm
    items = [
        TaskItem("a", "The river city market", " people"),
        TaskItem("b", "A quiet morning light over the old stone bridge near the village", " garden"),
        TaskItem("c", "Often", " the teacher walks"),
    ]
    score = score_set(model, tok, items, max_len=64, batch_size=2, device=CPU)  # padded batches of 2 and 1
    expected_sum, expected_tokens = 0.0, 0
    for item in items:
        ids = [tok.eos_token_id] + tok(item.context, add_special_tokens=False).input_ids + tok(item.target).input_ids
        n = len(tok(item.target).input_ids)
        assert encode_item(tok, item, 64) == (ids, n)
        expected_sum += _direct(model, ids, n)[0]
        expected_tokens += n
    assert score.items == 3 and score.target_tokens == expected_tokens
    assert score.target_logprob_sum == pytest.approx(expected_sum, rel=1e-5)
    assert score.target_logprob == pytest.approx(expected_sum / expected_tokens, rel=1e-5)


def _single_token_target(tok, token_id):
    """The text of one token, when it encodes back to exactly that token (else None)."""
    text = tok.decode([token_id])
    return text if tok(text).input_ids == [token_id] else None


def _next_token_ranking(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].argsort(descending=True).tolist()  # (V,)


def test_a_target_the_model_predicts_is_counted_right(lm):
    model, tok = lm
    # a random model's argmax is often an id the tiny tokenizer never learned: take the first context whose
    # argmax is a real token that encodes back to itself
    for context in random_sentences(30, seed=5):
        ids = [tok.eos_token_id] + tok(context).input_ids
        ranked = _next_token_ranking(model, ids)
        right = _single_token_target(tok, ranked[0])
        if right is not None:
            break
    assert right is not None
    wrong = next(t for t in (_single_token_target(tok, i) for i in ranked[1:]) if t)
    items = [TaskItem("right", context, right), TaskItem("wrong", context, wrong)]
    score = score_set(model, tok, items, max_len=64, batch_size=8, device=CPU)
    assert (score.correct, score.accuracy) == (1, 0.5)
    assert score.target_logprob_sum == pytest.approx(sum(
        _direct(model, ids + tok(t).input_ids, 1)[0] for t in (right, wrong)), rel=1e-5)


def test_long_context_is_cut_on_the_left(lm):
    _, tok = lm
    item = TaskItem("long", " ".join(["the river city"] * 40), " market")
    ids, n = encode_item(tok, item, max_len=16)
    assert len(ids) == 16 and ids[-n:] == tok(" market").input_ids
    assert ids[:-n] == tok(item.context).input_ids[-(16 - n):]


def _run(config, upstream, out):
    out.mkdir()
    ctx = StepContext("evaluate", tracker=NullTracker())
    return run(config, {"model": upstream["model"], "tokens": upstream["tokens"]}, out, ctx), ctx


def test_stage_reports_every_set(upstream, lm, tmp_path):
    model, tok = lm
    extra = tmp_path / "my_set.jsonl"
    rows = [{"id": "x", "context": "The river city market", "target": " people"},
            {"id": "y", "context": "A quiet morning", "target": " light"}]
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    config = Config(seq_len=32, max_batches=1, prompts=[], task_files=[str(extra)])
    metrics, ctx = _run(config, upstream, tmp_path / "out")

    builtin = score_set(model, tok, read_set(builtin_path("stdlib_cloze")), 32, 8, CPU)
    mine = score_set(model, tok, read_set(extra), 32, 8, CPU)
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert list(report["tasks"]) == ["stdlib_cloze", "my_set"]
    assert report["tasks"]["my_set"]["items"] == 2
    assert report["tasks"]["stdlib_cloze"]["items"] == builtin.items >= 100
    assert report["tasks"]["my_set"]["target_logprob"] == pytest.approx(mine.target_logprob, rel=1e-5)
    assert metrics["stdlib_cloze_accuracy"] == builtin.accuracy
    assert metrics["stdlib_cloze_target_logprob"] == pytest.approx(builtin.target_logprob, rel=1e-5)
    assert metrics["my_set_target_logprob"] == report["tasks"]["my_set"]["target_logprob"]
    # eval.json's "metrics" keeps its held-out figures as before sets; their standard errors are in "all_metrics"
    assert report["metrics"] == {k: v for k, v in metrics.items() if k.startswith("valid_") and not k.endswith("_stderr")}
    assert report["all_metrics"]["valid_loss_stderr"] == metrics["valid_loss_stderr"] > 0
    assert ctx.tracker.metrics == []  # the executor logs what run returns
    assert [d["name"] for d in ctx.tracker.datasets] == ["valid", "stdlib_cloze", "my_set"]
    table = (tmp_path / "out" / "eval_table.md").read_text()
    assert f"| my_set | 2 | {mine.accuracy:.4f} | {mine.target_logprob:.4f} |" in table


def test_no_tasks_reports_none(upstream, tmp_path):
    metrics, _ = _run(Config(seq_len=16, max_batches=1, prompts=[], tasks=[]), upstream, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["tasks"] == {}
    assert not any(k.endswith("_accuracy") for k in metrics)


def test_bad_task_names_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match=r"stages\.evaluate\.tasks: unknown evaluation set 'lambada'"):
        Config(tasks=["lambada"])
    with pytest.raises(SpecError, match=r"stages\.evaluate\.task_files: .*'stdlib_cloze'"):
        Config(task_files=[str(tmp_path / "stdlib_cloze.jsonl")])


def test_malformed_task_file_line_is_an_input_error(upstream, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a b c", "target": " d"}\n{"context": "a b c"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl, line 2"):
        read_set(bad)
    bad.write_text('{"context": "a b c", "target": " d"}\nnot json\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not JSON"):
        _run(Config(seq_len=16, max_batches=1, prompts=[], tasks=[], task_files=[str(bad)]), upstream, tmp_path / "out")
    with pytest.raises(InputError, match="missing.jsonl"):
        _run(Config(seq_len=16, max_batches=1, prompts=[], tasks=[], task_files=[str(tmp_path / "missing.jsonl")]),
             upstream, tmp_path / "out2")
