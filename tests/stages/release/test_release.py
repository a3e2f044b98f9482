import json
import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from factory.stage import StepContext
from factory.stages.release import Config, run
from factory.tasks.table import format_metric
from factory.tokens import load_tokenizer
from tests.builders import TINY_256, checkpoint


def _release(upstream, out, config=None, model=None):
    out.mkdir()
    inputs = {"model": model or upstream["model"], "tokens": upstream["tokens"], "evaluation": upstream["evaluation"]}
    return run(config or Config(model_name="tiny-nemotron-h"), inputs, out, StepContext("release"))


@pytest.fixture(scope="module")
def released(upstream, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "out"
    metrics = _release(upstream, out)
    return out, metrics


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    front, _, _ = readme[4:].partition("\n---\n")
    return yaml.safe_load(front)


# Imports only torch and transformers: what a user of the Hub folder has.
LOAD_AND_GENERATE = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder).eval()
ids = tokenizer("The river city", return_tensors="pt").input_ids
out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
print(json.dumps({
    "architecture": type(model).__name__,
    "prompt_len": ids.shape[1],
    "new_tokens": out[0, ids.shape[1]:].tolist(),
    "eos": [tokenizer.eos_token_id, model.generation_config.eos_token_id, model.config.eos_token_id],
    "vocab": [len(tokenizer), model.config.vocab_size],
    "factory_imported": any(name.split(".")[0] == "factory" for name in sys.modules),
}))
"""


def test_release_loads_and_generates_in_stock_transformers(released):
    out, metrics = released
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_GENERATE, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["architecture"] == "NemotronHForCausalLM"
    assert result["factory_imported"] is False  # the folder needs no factory code (no remote code)
    assert 1 <= len(result["new_tokens"]) <= 5
    assert all(0 <= t < result["vocab"][1] for t in result["new_tokens"])
    assert len(set(result["eos"])) == 1 and result["eos"][0] is not None
    assert metrics["pushed"] == 0.0


def test_folder_holds_the_checkpoint_weights_in_bf16_and_tokenizer(released, upstream):
    import torch
    from safetensors.torch import load_file

    out, metrics = released
    src = load_file(upstream["model"].path / "model" / "model.safetensors")
    got = load_file(out / "model.safetensors")
    assert set(got) == set(src) and all(t.dtype == torch.bfloat16 for t in got.values())
    assert all(torch.equal(got[k], v.to(torch.bfloat16)) for k, v in src.items())  # the FP32 checkpoint, rounded
    assert metrics["weight_bytes"] == (out / "model.safetensors").stat().st_size
    assert sum(t.numel() * 2 for t in got.values()) <= metrics["weight_bytes"] < sum(t.numel() * 4 for t in src.values()) * 0.51
    tok_src = upstream["tokens"].path / "tokenizer" / "tokenizer.json"
    assert (out / "tokenizer.json").read_bytes() == tok_src.read_bytes()

    gen = json.loads((out / "generation_config.json").read_text())
    # <pad>=0 <s>=1 </s>=2 as the fixture's tokenizer trained them
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, 2, 0)
    # greedy unless the spec says otherwise: the card's snippets print the same text on every run
    assert not gen.get("do_sample", False) and "temperature" not in gen and gen["max_new_tokens"] == 256
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (1, 2, 0)
    assert cfg["model_type"] == "nemotron_h" and cfg["dtype"] == "bfloat16"
    # what vLLM's NemotronH reads, beside the transformers-5 form it is derived from
    pattern = "".join({"linear_attention": "M", "full_attention": "*", "mlp": "-", "moe": "E"}[t] for t in cfg["layers_block_type"])
    assert cfg["hybrid_override_pattern"] == pattern and cfg["num_hidden_layers"] == len(pattern)


def test_model_card_front_matter(released, upstream):
    out, _ = released
    readme = (out / "README.md").read_text()
    meta = _front_matter(readme)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "apache-2.0"
    assert meta["language"] == ["en"]
    assert "nemotron-h" in meta["tags"]
    # Hub metadata holds Hub ids only (release.datasets, none here); local paths and store URIs stay in the body
    assert "datasets" not in meta
    front = readme.split("---\n", 2)[1]
    assert "file://" not in front and upstream["corpus"].uri not in front and upstream["tokens"].uri not in front
    assert "- raw source `file:///data/raw/pages.warc.gz`" in readme
    assert "base_model" not in meta  # trained from scratch

    report = json.loads((upstream["evaluation"].path / "eval.json").read_text())
    evaluation = report["metrics"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "tiny-nemotron-h"
    result, *sets, arith = entry["results"]
    everything = report["all_metrics"]
    # one result per built-in cloze set, with the numbers eval.json holds and their error bars
    assert [b["dataset"]["name"] for b in sets] == list(report["tasks"]) and report["tasks"]
    for b in sets:
        name = b["dataset"]["name"]
        task = report["tasks"][name]
        assert {m["type"]: m["value"] for m in b["metrics"]} == {
            "accuracy": task["accuracy"], "accuracy_stderr": everything[f"{name}_accuracy_stderr"],
            "target_logprob": task["target_logprob"]}
    assert result["dataset"] == {"type": "held-out-split", "name": "held-out validation split", "split": "valid"}
    by_type = {m["type"]: m["value"] for m in result["metrics"]}
    assert by_type == {
        "loss": evaluation["valid_loss"], "loss_stderr": everything["valid_loss_stderr"],
        "perplexity": evaluation["valid_perplexity"], "perplexity_stderr": everything["valid_perplexity_stderr"],
        "bits_per_byte": evaluation["valid_bits_per_byte"], "bits_per_byte_stderr": everything["valid_bits_per_byte_stderr"],
    }
    # a generation benchmark: its scores with error bars, not its counts
    assert arith["dataset"] == {"type": "procedural:basic_arithmetic", "name": "arith"}
    scores = {m["type"]: m["value"] for m in arith["metrics"]}
    assert set(scores) == {"pass@1", "pass@1_stderr", "pass@2", "pass@2_stderr", "maj@2", "maj@2_stderr"}
    assert scores["pass@2"] == everything["arith_pass@2"] and scores["maj@2_stderr"] == everything["arith_maj@2_stderr"]
    # the body's table gives every figure with its standard error
    body = readme.split("\n---\n", 1)[1]
    assert f"| arith_pass@1 | {format_metric(everything['arith_pass@1'])} | {format_metric(everything['arith_pass@1_stderr'])} |" in body
    assert "| arith_items | 4 | - |" in body


def test_model_card_body_lists_the_lineage(released, upstream):
    out, _ = released
    body = (out / "README.md").read_text().split("\n---\n", 1)[1]
    assert "## Lineage" in body
    rows = [line for line in body.splitlines() if line.startswith("| ") and "`" in line and " | " in line]
    stages = [row.split("|")[1].strip() for row in rows if row.split("|")[1].strip() in {"evaluate", "pretrain", "tokenize", "curate"}]
    assert stages == ["evaluate", "pretrain", "tokenize", "curate"]  # nearest first, each once
    for name in ("evaluation", "model", "tokens", "corpus"):
        art = upstream[name]
        assert art.fingerprint[:16] in body
        assert art.manifest["producer"]["mlflow_run_id"] in body
        assert art.uri in body
    assert "from scratch" in body
    # the card says what its weights are and what the evaluation's perplexity was measured on
    assert "The weights are BF16 (`dtype` in config.json): the checkpoint's weights rounded to BF16" in body
    evaluation = json.loads((upstream["evaluation"].path / "eval.json").read_text())
    windows = int(evaluation["metrics"]["valid_tokens"]) // evaluation["config"]["seq_len"]
    assert f"perplexity over {windows} windows of {evaluation['config']['seq_len']} tokens of the held-out split" in body


def test_a_base_model_known_only_locally_is_named_in_the_body_not_the_hub_metadata(upstream, tmp_path):
    tuned = checkpoint(tmp_path / "tuned_art", load_tokenizer(upstream["tokens"].path), TINY_256, vocab_size=2048,
                       inputs={"tokens": upstream["tokens"], "model": upstream["model"]})
    _release(upstream, tmp_path / "out", model=tuned)
    card = (tmp_path / "out" / "README.md").read_text()
    meta = _front_matter(card)
    assert "base_model" not in meta  # the Hub reads base_model as a Hub id; a local path there is not usable
    assert f"starting from `{upstream['model'].uri}`" in card


def test_push_skips_without_token_and_uploads_with_one(upstream, tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr("factory.stages.release.hub.HfApi", FakeApi)
    config = Config(push=True, repo_id="me/tiny")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert _release(upstream, tmp_path / "a", config)["pushed"] == 0.0
    assert calls == []

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert _release(upstream, tmp_path / "b", config)["pushed"] == 1.0
    assert calls[:2] == [("init", "hf_test"), ("create_repo", "me/tiny")]
    assert calls[2][1] == "me/tiny" and {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(calls[2][2])


def test_push_needs_a_repo_id():
    with pytest.raises(pydantic.ValidationError, match="repo_id"):
        Config(push=True)
    assert "push" not in Config().result_fields()  # pushing does not change the folder's contents



def test_generation_config_samples_only_when_the_spec_says_so(upstream, tmp_path):
    from factory.stages.release.folder import write_generation_config

    tokenizer = load_tokenizer(upstream["tokens"].path)
    write_generation_config(tmp_path, tokenizer, Config(do_sample=True, temperature=0.6))
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert (gen["do_sample"], gen["temperature"], gen["top_p"]) == (True, 0.6, 0.95)
    # a sampling setting on a greedy release would be written nowhere: refused, naming the field and the fix
    with pytest.raises(pydantic.ValidationError, match="temperature: a sampling setting.*set do_sample: true"):
        Config(temperature=0.6)


def test_hub_datasets_are_the_cards_datasets_metadata(upstream, tmp_path):
    _release(upstream, tmp_path / "out", Config(model_name="tiny-hub", datasets=["HuggingFaceFW/fineweb-edu"]))
    readme = (tmp_path / "out" / "README.md").read_text()
    meta = _front_matter(readme)
    assert meta["datasets"] == ["HuggingFaceFW/fineweb-edu"]
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "HuggingFaceFW/fineweb-edu"
    assert "[`HuggingFaceFW/fineweb-edu`](https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu)" in readme
    with pytest.raises(pydantic.ValidationError, match="datasets.0: 'file:///data/raw' is not a Hub dataset id"):
        Config(datasets=["file:///data/raw"])
