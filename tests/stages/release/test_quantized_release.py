"""A release with quantized variants: a real quantize artifact of the tiny model -> release -> every variant folder
loads (the compressed-tensors ones in stock transformers on CPU, and generate), and each has its model-card
section with the quantize artifact's numbers."""

import json
import os
import subprocess
import sys

import pytest

from factory.errors import InputError
from factory.stage import StepContext
from factory.stages import quantize
from factory.stages.release import Config, run
from factory.tasks.table import format_metric
from factory.tokens import load_tokenizer
from tests.builders import TINY_256, checkpoint, publish, random_sentences, stage_output

# Stock transformers + compressed-tensors only, as a laptop user has them: load each subfolder; a refusal is recorded
# with its message, a load is scored on the quantize step's windows (same perplexity arithmetic) and generates.
LOAD_VARIANTS = """
import json, math, sys
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer
job = json.load(open(sys.argv[1]))
windows = torch.tensor(job["windows"])
results = {}
for folder in job["folders"]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
    except Exception as err:
        results[folder] = {"refused": f"{type(err).__name__}: {err}"}
        continue
    with torch.no_grad():
        logits = model(input_ids=windows[:, :-1], use_cache=False).logits.float()
        nll = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten(), reduction="none").view(windows.shape[0], -1)
        ids = tokenizer("The river city walks", return_tensors="pt").input_ids
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    results[folder] = {"perplexity": math.exp(float(nll.mean(dim=1).double().mean())), "new_tokens": out[0, ids.shape[1]:].tolist(),
                       "top1": logits.argmax(-1).flatten().tolist(),
                       "quantizer": type(getattr(model.config, "quantization_config", None)).__name__}
results["factory_imported"] = any(name.split(".")[0] == "factory" for name in sys.modules)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def quantized(upstream, tmp_path_factory):
    root = tmp_path_factory.mktemp("release-quantized")
    cloze = root / "tiny_cloze.jsonl"
    cloze.write_text("".join(json.dumps({"id": f"c{i}", "context": " ".join(s.split()[:-1]), "target": " " + s.split()[-1]}) + "\n"
                             for i, s in enumerate(random_sentences(24, seed=7))))
    # a random tiny model: the gates are loose, the numbers are what the card must repeat
    cfg = quantize.Config(variants=["fp8", "nvfp4", "mixed"], calibration_split="valid", calibration_samples=4, eval_samples=8,
                          seq_len=32, tasks=[], task_files=[str(cloze)], task_seq_len=32, bits_budget=6.0,
                          max_ppl_increase={"fp8": 0.5, "nvfp4": 0.5, "mixed": 0.5})
    return stage_output("quantize", cfg, {"model": upstream["model"], "tokens": upstream["tokens"]}, root / "quantized_art")


@pytest.fixture(scope="module")
def released(upstream, quantized, tmp_path_factory):
    out = tmp_path_factory.mktemp("release-with-variants") / "out"
    out.mkdir()
    inputs = {"model": upstream["model"], "tokens": upstream["tokens"], "evaluation": upstream["evaluation"], "quantized": quantized}
    metrics = run(Config(model_name="tiny-nemotron-h", repo_id="me/tiny"), inputs, out, StepContext("release"))
    return out, metrics


VARIANTS = ["fp8", "nvfp4", "mixed", "fp8-compressed-tensors", "nvfp4-compressed-tensors"]


def test_each_variant_is_a_loadable_subfolder(released, upstream):
    out, metrics = released
    root_tokenizer = (out / "tokenizer.json").read_bytes()
    for name in VARIANTS:
        folder = out / name
        assert (folder / "tokenizer.json").read_bytes() == root_tokenizer
        cfg = json.loads((folder / "config.json").read_text())
        assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (1, 2, 0)
        assert cfg["quantization_config"]["quant_method"] == ("modelopt" if "-" not in name else "compressed-tensors")
        assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == 2
        assert (folder / "hf_quant_config.json").is_file() == ("-" not in name)
        assert metrics[f"{name.replace('-', '_')}_weight_bytes"] == (folder / "model.safetensors").stat().st_size
    # 4-bit weights are smaller than 8-bit ones, which are smaller than BF16 (the tiny model is mostly embeddings)
    assert metrics["nvfp4_weight_bytes"] < metrics["fp8_weight_bytes"] < metrics["weight_bytes"]


def test_every_variant_either_runs_within_its_gap_in_stock_transformers_or_is_marked_for_engines(released, quantized, upstream,
                                                                                                  tmp_path):
    """Each variant folder loaded as a laptop user would: compressed-tensors ones score what the quantize step measured
    (within their gate of BF16) and generate; ModelOpt ones holding NVFP4 weights are refused with an error; a ModelOpt
    folder transformers loads without its scales (fp8/) predicts other tokens than BF16 does, and the card's table, its own
    section and the folder's README.md each say it runs in vLLM / TensorRT-LLM only."""
    from factory.artifacts import Tokens

    out, _ = released
    report = json.loads((quantized.path / "quantize.json").read_text())
    windows = Tokens.of({"tokens": upstream["tokens"]}, "tokens").windows("valid", 32, 8)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"windows": windows.tolist(), "folders": [str(out), *(str(out / n) for n in VARIANTS)]}))
    proc = subprocess.run([sys.executable, "-c", LOAD_VARIANTS, str(job)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("factory_imported") is False  # the subfolders need no factory code
    card = (out / "README.md").read_text()
    table = {row.split("|")[1].strip(" `/"): row for row in card.splitlines() if row.startswith("| `")}
    root = results[str(out)]["top1"]

    def agreement(r):  # top-1 agreement with the BF16 model at the root, over every predicted position
        return sum(a == b for a, b in zip(r["top1"], root)) / len(root)

    for name in VARIANTS:
        r, v = results[str(out / name)], report["variants"][name]
        if v["export"] == "compressed-tensors":
            assert r["quantizer"] == "CompressedTensorsConfig" and len(r["new_tokens"]) == 4
            assert r["perplexity"] == pytest.approx(v["perplexity"], rel=1e-3)
            assert r["perplexity"] / report["bf16_perplexity"] - 1 <= v["gate"]
            assert "| transformers (CPU), vLLM |" in table[name]
        elif "refused" in r:
            assert "ignore_mismatched_sizes" in r["refused"], r["refused"]  # the packed NVFP4 shapes fit no layer
            assert "vLLM / TensorRT-LLM only — transformers refuses it" in table[name]
        else:  # loaded without error: the FP8 codes cast to BF16 without their scales predict other tokens
            assert agreement(r) < 0.5 < agreement(results[str(out / "fp8-compressed-tensors")])
            mark = "vLLM / TensorRT-LLM only — transformers loads it without scales"
            assert mark in table[name] and f"- Loads in: {mark}." in card and f"**Loads in: {mark}.**" in (out / name / "README.md").read_text()
    assert "refused" in results[str(out / "nvfp4")] and "refused" in results[str(out / "mixed")]
    assert "refused" not in results[str(out / "fp8")]


@pytest.mark.parametrize("name", ["fp8", "nvfp4"])
def test_modelopt_variant_reads_back_as_the_quantize_stage_measured_it(released, quantized, upstream, name):
    import math

    from factory.artifacts import Tokens
    from factory.model.checkpoints import lm_loss
    from factory.stages.quantize.modelopt_format import load_modelopt

    out, _ = released
    report = json.loads((quantized.path / "quantize.json").read_text())
    windows = Tokens.of({"tokens": upstream["tokens"]}, "tokens").windows("valid", 32, 8)
    assert math.exp(lm_loss(load_modelopt(out / name), windows)) == pytest.approx(report["variants"][name]["perplexity"], rel=1e-6)


def test_model_card_has_a_section_per_variant_with_the_quantize_numbers(released, quantized):
    out, metrics = released
    body = (out / "README.md").read_text().split("\n---\n", 1)[1]
    report = json.loads((quantized.path / "quantize.json").read_text())
    assert "## Quantized variants" in body and "## Lineage" in body  # the BF16 card is still whole
    sections = body.split("\n### ")[1:]
    assert [s.split("`")[1] for s in sections] == [f"{n}/" for n in report["variants"]] and len(sections) == 5
    base_acc = report["bf16_tasks"]["tiny_cloze"]
    bf16 = f"{format_metric(report['bf16_perplexity'])} ± {format_metric(report['bf16_perplexity_stderr'])}"
    # one perplexity per model and window set: the quantize step's BF16 figure is labelled with its windows
    assert (f"measured by the quantize step on {report['eval_windows']} windows of 32 tokens of the `valid` split" in body
            and f"BF16 is this release's root model measured again on those same windows, {bf16}" in body)
    root = (out / "model.safetensors").stat().st_size
    for section, (name, v) in zip(sections, report["variants"].items()):
        ppl = f"{format_metric(v['perplexity'])} ± {format_metric(v['perplexity_stderr'])}"
        assert f"| perplexity (quantize step's windows) | {bf16} | {ppl} | {100 * v['relative_increase']:+.2f}% |" in section
        t = v["tasks"]["tiny_cloze"]
        assert (f"| tiny_cloze accuracy | {format_metric(base_acc['accuracy'])} ± {format_metric(base_acc['accuracy_stderr'])} | "
                f"{format_metric(t['accuracy'])} ± {format_metric(t['accuracy_stderr'])} | "
                f"{format_metric(0.0 - t['accuracy_drop'])} ± {format_metric(t['accuracy_drop_stderr'])} |") in section
        size = metrics[name.replace('-', '_') + '_weight_bytes']
        # sizes against the BF16 weights the root holds
        assert f"Size on disk: {size / 2**20:.2f} MiB of weights, {root / size:.2f}x smaller than the BF16 weights at the root" in section
        assert f"perplexity at most {100 * v['gate']:.2f}% above BF16's" in section and ": passed." in section
        assert "`lm_head`" in section  # the linears kept in BF16 are named
        if v["export"] == "compressed-tensors":
            assert f'from_pretrained("me/tiny", subfolder="{name}")' in section
        else:
            assert f"vllm serve ./{name}" in section and f'--include "{name}/*"' in section


def test_variants_of_another_model_are_refused(upstream, quantized, tmp_path):
    other = checkpoint(tmp_path / "other_art", load_tokenizer(upstream["tokens"].path), TINY_256, vocab_size=2048,
                       inputs={"tokens": upstream["tokens"]})
    out = tmp_path / "out"
    out.mkdir()
    inputs = {"model": other, "tokens": upstream["tokens"], "evaluation": upstream["evaluation"], "quantized": quantized}
    with pytest.raises(InputError, match="was quantized from model .* not the released model"):
        run(Config(), inputs, out, StepContext("release"))
    assert list(out.iterdir()) == []


def test_a_quantized_input_without_its_variant_folders_is_refused(upstream, tmp_path):
    folder = tmp_path / "quantized_art"
    folder.mkdir()
    (folder / "quantize.json").write_text(json.dumps({"bf16_perplexity": 10.0, "variants": {"fp8": {}}}))
    art = publish(folder, "quantize", "quantized", inputs={"model": upstream["model"]})
    out = tmp_path / "out"
    out.mkdir()
    inputs = {"model": upstream["model"], "tokens": upstream["tokens"], "evaluation": upstream["evaluation"], "quantized": art}
    with pytest.raises(InputError, match=r"fp8: variant 'fp8' of quantize.json needs config.json and \*.safetensors"):
        run(Config(), inputs, out, StepContext("release"))
    (folder / "quantize.json").write_text("{")
    with pytest.raises(InputError, match="quantize.json: not readable as JSON"):
        run(Config(), inputs, out, StepContext("release"))
    assert list(out.iterdir()) == []
