"""G-Vendi of every dataset artifact: the executor's hook (`factory.gvendi.measure_output`) on corpus and
conversations folders, with a fresh or a checkpoint proxy, and end to end through the executor, where the
score is the step's MLflow metric `gvendi`, a manifest metric and the artifact's gvendi.json.

The dataset step is a toy stage kind ("textset", tests/textset_kind/: writes its config's texts as a corpus),
registered in a subprocess the way tests/test_kinds.py registers its toy kind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from factory.gvendi import GVendiSettings, measure_output
from factory.stage import StepContext
from tests.spine import ROOT
from tests.textset_kind.config import Config
from tests.textset_kind.stage import run

# sample: more than the records, so every one is read; short windows and projections keep it cheap
SMALL = GVendiSettings(sample=8, seq_len=64, dim=256)


TEXTS = ["The river runs under the old stone bridge near the market square.",
         "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
         "Solve for x: 3x + 7 = 22. Subtract 7 from both sides, then divide by 3.",
         "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
         '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
         "In 1905 Einstein published four papers on the photoelectric effect and relativity.",
         "x"]  # one token: no window to measure, skipped


def chats(folder: Path) -> Path:
    folder.mkdir()
    records = [{"id": f"c{i}", "messages": [{"role": "system", "content": "detailed thinking off"},
                                            {"role": "user", "content": f"Question {i}?"},
                                            {"role": "assistant", "content": answer}]}
               for i, answer in enumerate(["4", "Paris is the capital of France.", "def f():\n    return 1"])]
    records.append({"id": "no-answer", "messages": [{"role": "user", "content": "hello"}]})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_hook_measures_corpus_and_conversations_and_nothing_else(tmp_path):
    corpus = tmp_path / "corpus"
    run(Config(texts=TEXTS), {}, corpus, StepContext("t"))
    metrics = measure_output("corpus", corpus, {}, SMALL)
    report = json.loads((corpus / "gvendi.json").read_text())
    assert report["examples"] == 6 and report["skipped"] == {"gvendi_unusable_records": 1}
    assert metrics == {"gvendi": report["gvendi"], "gvendi_examples": 6.0} and 1.0 < metrics["gvendi"] <= 6.0
    assert report["proxy"] == "fresh:tiny:bytes:seed0" and report["settings"]["seq_len"] == 64

    convo = measure_output("conversations", chats(tmp_path / "chats"), {}, SMALL)
    report = json.loads((tmp_path / "chats" / "gvendi.json").read_text())
    assert report["examples"] == 3 and report["skipped"] == {"gvendi_unusable_records": 1} and 1.0 < convo["gvendi"] <= 3.0

    assert measure_output("checkpoint", corpus, {}, SMALL) == {}
    assert measure_output("corpus", corpus, {}, None) == {}


def test_a_checkpoint_input_with_a_tokenizer_is_the_proxy(upstream, tmp_path):
    tokens, model = upstream["tokens"], upstream["model"]
    folder = chats(tmp_path / "chats")
    metrics = measure_output("conversations", folder, {"teacher": model, "tokens": tokens}, SMALL)
    report = json.loads((folder / "gvendi.json").read_text())
    assert report["proxy"] == "checkpoint:model" and report["examples"] == 3
    assert report["proxy_parameters"] > 2048 * 64  # its 2048-token BPE vocabulary, not bytes
    assert 1.0 < metrics["gvendi"] <= 3.0


EXECUTOR = """
import json, sys
from factory.kinds import KINDS, StageKind

KINDS["textset"] = StageKind("tests.textset_kind", output="corpus")

from factory.spec import parse_spec
from factory.steps import Executor

spec = parse_spec(json.loads(sys.argv[1]))
executor = Executor(spec)
executor.parent_run_id = executor.lineage.start_pipeline("gv", spec.to_yaml())
out = executor.run()
executor.lineage.end_pipeline(executor.parent_run_id)
run = executor.lineage.client.get_run(out["texts"]["producer"]["mlflow_run_id"])
print(json.dumps({"manifest": out["texts"], "mlflow": run.data.metrics}))
"""


def test_the_executor_logs_gvendi_for_a_dataset_step(tmp_path):
    spec = {"name": "gv", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
            "gvendi": SMALL.model_dump(mode="json", exclude={"content_hash"}),
            "steps": {"texts": {"kind": "textset", "config": {"texts": TEXTS}}}}
    r = subprocess.run([sys.executable, "-c", EXECUTOR, json.dumps(spec)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    manifest = report["manifest"]
    assert manifest["metrics"]["documents"] == 7.0 and manifest["metrics"]["gvendi_examples"] == 6.0
    assert 1.0 < manifest["metrics"]["gvendi"] <= 6.0
    assert report["mlflow"]["gvendi"] == manifest["metrics"]["gvendi"]
    folder = tmp_path / "store" / "texts" / manifest["fingerprint"][:16]
    assert json.loads((folder / "gvendi.json").read_text())["gvendi"] == manifest["metrics"]["gvendi"]
    assert "gvendi.json" in {Path(f["path"]).name for f in manifest["files"]}
