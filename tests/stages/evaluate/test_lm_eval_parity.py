"""Our multiple-choice likelihood accuracy equals lm-evaluation-harness's on the same tiny model and items.

lm-eval runs offline: its task YAML points at a local JSONL file, and its HFLM loads the tiny checkpoint and
tokenizer from their folders.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from factory.stages.evaluate.likelihood import score_multiple_choice
from factory.tasks.files import MultipleChoiceItem

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a test extra (pip install lm-eval)")

WORDS = "river city market morning light water stone bridge garden teacher book road house village".split()


def items(n: int = 12) -> list[MultipleChoiceItem]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        options = [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(rng.randint(2, 4))]
        out.append(MultipleChoiceItem(id=f"q{i}", question=" ".join(rng.sample(WORDS, 6)) + "?",
                                      options=options, answer="ABCD"[rng.randrange(len(options))]))
    return out


def test_acc_and_acc_norm_equal_lm_eval(upstream, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, tokenizer_dir = upstream["model"].path / "model", upstream["tokens"].path / "tokenizer"
    mc = items()
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"question": it.question, "options": it.options,
                                        "gold": ord(it.answer) - ord("A")}) + "\n" for it in mc))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "factory_mc.yaml").write_text(
        "task: factory_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{options}}"\ndoc_to_target: gold\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    lm = HFLM(pretrained=str(model_dir), tokenizer=str(tokenizer_dir), device="cpu", batch_size=4)
    result = simple_evaluate(model=lm, tasks=["factory_mc"], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                             log_samples=True)
    theirs = result["results"]["factory_mc"]
    their_lls = [[float(r[0]) for r in sample["filtered_resps"]]
                 for sample in sorted(result["samples"]["factory_mc"], key=lambda s: s["doc_id"])]

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    acc, acc_norm, our_lls = score_multiple_choice(model, tokenizer, mc)
    print(f"acc {acc.value:.4f} (lm-eval {theirs['acc,none']:.4f}), acc_norm {acc_norm.value:.4f} "
          f"(lm-eval {theirs['acc_norm,none']:.4f}) on {len(mc)} items")
    assert acc.value == theirs["acc,none"] and acc_norm.value == theirs["acc_norm,none"]
    assert acc.stderr == pytest.approx(theirs["acc_stderr,none"])
    assert [len(row) for row in our_lls] == [len(row) for row in their_lls]
    assert sum(our_lls, []) == pytest.approx(sum(their_lls, []), abs=1e-3)
