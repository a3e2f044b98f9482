"""`factory plan` per kind: every kind's cost hook, the one training estimate the trainer kinds share, the models
that flow from step to step, and counts a published build measured in place of estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from factory.cost.estimate import GPUS
from factory.cost.flops import flops_per_token
from factory.cost.param_count import parameter_counts
from factory.cost.workload import PROMPT_TOKENS, generation_flops
from factory.kinds import KINDS
from factory.model import PRESETS
from factory.plan import plan_spec
from factory.spec import parse_spec
from tests.builders.architectures import model_folder_of

ROOT = Path(__file__).resolve().parents[2]
SCORED = str(ROOT / "examples/reward_model/scored_responses.jsonl")


def _every_kind(tmp_path: Path, **overrides) -> dict:
    """A named-steps spec with one step of every kind, on the tiny preset, storing in an empty folder."""
    steps = {
        "quality": {"kind": "quality", "config": {"max_reference_docs": 50}},
        "curate": {"kind": "curate", "config": {"sources": [str(ROOT / "examples/data/smoke-html")], "quality": {"enabled": True}},
                   "inputs": {"quality": "quality"}},
        "synth": {"kind": "synth", "config": {"max_docs": 16, "chunk_size": 600, "generation": {"max_new_tokens": 64},
                                               "generator": {"kind": "openai", "base_url": "http://127.0.0.1:9", "model": "m"}},
                  "inputs": {"corpus": "curate"}},
        "mix": {"kind": "mix", "config": {}, "inputs": {"corpus": "curate", "synthetic": "synth"}},
        "tokenize": {"kind": "tokenize", "config": {"vocab_size": 2048}, "inputs": {"corpus": "mix"}},
        "pretrain": {"kind": "pretrain", "config": {"seq_len": 128, "steps": 100}, "inputs": {"tokens": "tokenize"}},
        "compress": {"kind": "compress", "config": {"target": {"hidden_size": 48, "intermediate_size": 128, "drop_layers": 1}},
                     "inputs": {"model": "pretrain", "tokens": "tokenize"}},
        "distill": {"kind": "distill", "config": {"seq_len": 128, "steps": 50},
                    "inputs": {"student": "compress", "teacher": "pretrain", "tokens": "tokenize"}},
        "posttrain_data": {"kind": "posttrain_data", "config": {}},
        "sft": {"kind": "sft", "config": {"seq_len": 128, "steps": 50}, "inputs": {"model": "distill", "data": "posttrain_data"}},
        "rl": {"kind": "rl", "config": {"steps": 10, "micro_batch_size": 16,
                                         "rollout": {"group_size": 4, "length_schedule": [
                                             {"until_fraction": 0.5, "max_new_tokens": 32},
                                             {"until_fraction": 1.0, "max_new_tokens": 64}]}},
               "inputs": {"model": "sft", "data": "posttrain_data"}},
        "opd": {"kind": "opd", "config": {"steps": 10, "micro_batch_size": 8, "max_new_tokens": 32},
                "inputs": {"model": "sft", "teacher": "rl", "data": "posttrain_data"}},
        "reward_model": {"kind": "reward_model", "config": {"data": SCORED, "seq_len": 64}, "inputs": {"model": "sft"}},
        "preference": {"kind": "preference", "config": {"judge": "reward_model", "seq_len": 128, "max_new_tokens": 32},
                       "inputs": {"model": "rl", "data": "posttrain_data", "reward_model": "reward_model"}},
        "quantize": {"kind": "quantize", "config": {}, "inputs": {"model": "preference", "tokens": "tokenize"}},
        "evaluate": {"kind": "evaluate", "config": {"seq_len": 128}, "inputs": {"model": "preference", "tokens": "tokenize"}},
        "release": {"kind": "release", "config": {}, "inputs": {"model": "preference", "tokens": "tokenize",
                                                                  "evaluation": "evaluate", "quantized": "quantize"}},
    }
    for name, config in overrides.items():
        steps[name]["config"].update(config)
    return {"name": "every-kind", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
            "model": {"preset": "tiny"}, "steps": steps}


def _plan(data: dict, **kwargs):
    return {s.step: s for s in plan_spec(parse_spec(data), **kwargs).steps}


def test_every_kind_has_a_cost_hook_and_every_step_gets_figures(tmp_path):
    assert all(k.hook("cost") is not None for k in KINDS.values())
    data = _every_kind(tmp_path)
    base = model_folder_of("llama", tmp_path / "llama")  # an imported model: its folder is read, never its weights
    data["steps"]["import_model"] = {"kind": "import_model", "config": {"source": str(base)}}
    assert {s["kind"] for s in data["steps"].values()} == set(KINDS)
    report = plan_spec(parse_spec(data))
    steps = {s.step: s for s in report.steps}
    assert list(steps) == list(parse_spec(data).step_defs())  # one row per step: no row that is not a step
    for s in steps.values():
        assert s.data, f"{s.step}: no figure"
        assert s.basis in ("spec", "estimate") or s.basis.startswith(("spec; measured", "estimate; measured"))
    # trainers, and every kind that runs a model, have FLOPs and memory
    for name in ("pretrain", "distill", "sft", "rl", "reward_model", "preference", "compress", "quantize", "evaluate", "mix"):
        assert steps[name].flops > 0 and steps[name].memory_total > 0, name
    assert steps["synth"].data["generated"] == steps["synth"].data["prompts"] * 64
    assert steps["reward_model"].data["records"] == sum(1 for line in Path(SCORED).read_text().splitlines() if line.strip())
    assert steps["reward_model"].measured == ("records",)
    assert steps["posttrain_data"].data["prompts"] == 64  # the default procedural set
    assert steps["import_model"].data["parameters"] == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())
    # the serving memory of the released model is the release step's, at the longest context the model declares
    tiny = PRESETS["tiny"]()
    assert steps["release"].data["serve_context"] == tiny.max_position_embeddings
    table, as_json = report.table(), json.loads(report.to_json())
    assert "basis" in table.splitlines()[0] and "estimate" in table and "serving at 1024 tokens" in table
    assert [s["step"] for s in as_json["steps"]] == list(steps) and "model" not in as_json["steps"][0]


def test_a_post_training_step_plans_the_model_it_trains_through_compress():
    data = _every_kind(Path("/nonexistent"))
    steps = _plan(data)
    tiny, vocab = PRESETS["tiny"](), 2048
    pruned = tiny.model_copy(update={"hidden_size": 48, "intermediate_size": 128, "pattern": tiny.pattern[:-3] + "*-"})
    assert tiny.pattern == "M-M*-" and pruned.pattern == "M-*-"  # one Mamba layer dropped (the most common kind)
    assert steps["compress"].data["params_before"] == parameter_counts(tiny, vocab).total
    assert steps["compress"].data["params_after"] == parameter_counts(pruned, vocab).total
    for name in ("distill", "sft", "rl", "preference"):  # the distilled student all the way down
        assert steps[name].data["params"] == parameter_counts(pruned, vocab).total, name


def test_sft_flops_are_six_times_parameters_times_tokens_and_cost_what_the_gpus_say(tmp_path):
    data = _every_kind(tmp_path)
    data["model"] = {"preset": "nemotron_h_8b"}
    data["steps"]["tokenize"]["config"]["vocab_size"] = 131072
    data["steps"]["sft"]["config"].update(seq_len=2048, micro_batch_size=2, grad_accum=4, steps=100, precision="bf16")
    data["steps"]["sft"]["inputs"]["model"] = "pretrain"
    data["resources"] = {"sft": {"gpus": 8, "gpu_type": "H100"}}
    sft = _plan(data, mfu=0.5, price_per_gpu_hour=3.0)["sft"]
    tokens = 100 * 2 * 4 * 8 * 2048  # steps x micro-batch x grad_accum x data-parallel ranks x the row bound
    counts = parameter_counts(PRESETS["nemotron_h_8b"](), 131072)
    assert sft.data["tokens"] == tokens and sft.data["params"] == counts.total
    assert sft.flops == pytest.approx(6 * (counts.total - counts.embedding) * tokens, rel=0.05)
    assert sft.flops == pytest.approx(flops_per_token(PRESETS["nemotron_h_8b"](), 2048, vocab_size=131072).training * tokens)
    hours = sft.flops / (8 * GPUS["H100"].peak["bf16"] * 0.5) / 3600
    assert sft.hours == pytest.approx(hours) and sft.cost == pytest.approx(8 * hours * 3.0)
    assert sft.estimated and "dp=8" in sft.note and "upper bound" in sft.note


def test_rl_counts_rollout_generation_its_forwards_and_the_reference(tmp_path):
    steps = _plan(_every_kind(tmp_path))
    rl, sft = steps["rl"], steps["sft"]
    policy = sft.model
    samples = 16  # micro_batch_size x grad_accum x steps_per_rollout
    lengths = [32] * 5 + [64] * 5  # the length schedule at each of the 10 rollouts
    generation = sum(generation_flops(policy, samples, PROMPT_TOKENS, n) for n in lengths)
    train = flops_per_token(policy.config, PROMPT_TOKENS + 64, vocab_size=2048).training * 10 * samples * (PROMPT_TOKENS + 64)
    assert generation > 0 and rl.data["generated"] == samples * sum(lengths)
    assert rl.flops > train + generation and "generation" in rl.note and "reference" in rl.note
    assert "reference" in rl.memory  # log_reference_kl keeps the input model
    # without a reference: its forward and its weights go; with an endpoint, the generation is the server's
    lean = _plan(_every_kind(tmp_path, rl={"log_reference_kl": False}))["rl"]
    assert "reference" not in lean.memory and lean.flops == pytest.approx(rl.flops - (rl.flops - train - generation) / 2)
    served = _plan(_every_kind(tmp_path, rl={"rollout": {
        "group_size": 4, "generator": {"kind": "openai", "base_url": "http://127.0.0.1:9", "model": "m"},
        "length_schedule": [{"until_fraction": 0.5, "max_new_tokens": 32}, {"until_fraction": 1.0, "max_new_tokens": 64}]}}))["rl"]
    assert served.flops == pytest.approx(rl.flops - generation) and "server" in served.note


def test_distill_adds_the_teachers_forward_and_preference_its_pairs(tmp_path):
    steps = _plan(_every_kind(tmp_path))
    distill, teacher = steps["distill"], steps["pretrain"].model
    tokens = distill.data["tokens"]
    student = flops_per_token(steps["compress"].model.config, 128, vocab_size=2048).training * tokens
    assert distill.flops == pytest.approx(student + flops_per_token(teacher.config, 128, vocab_size=2048).forward * tokens)
    assert distill.memory["teacher"] == 4 * parameter_counts(teacher.config, 2048).total
    pref = steps["preference"]
    assert {"sampling", "reference", "judge"} <= set(pref.note.split("FLOPs ")[1].replace(",", "").split())
    verifier = _plan(_every_kind(tmp_path, preference={"judge": "verifier"}))["preference"]
    assert "judge" not in verifier.note and verifier.flops < pref.flops
    assert pref.data["prompts"] == 64 and pref.data["pairs"] == 64 + 32  # training and held-out prompts, one pair each


def _publish(store: Path, step, manifest_extra: dict, inputs: dict[str, str]) -> str:
    """A published build of `step` (a `StepDef`) in a local store: a manifest whose recipe matches it."""
    fingerprint = f"{step.name}-{len(list(store.glob('**/manifest.json')))}".ljust(64, "0")
    folder = store / step.name / fingerprint[:16]
    folder.mkdir(parents=True)
    (folder / "stats.json").write_text("{}")
    manifest = {"fingerprint": fingerprint, "files": [{"path": "stats.json", "size": 2}],
                "recipe": {"kind": step.kind, "config": json.loads(json.dumps(step.config.result_fields())), "inputs": inputs},
                **manifest_extra}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return fingerprint


def test_counts_a_published_build_measured_replace_the_estimates(tmp_path):
    data = yaml.safe_load((ROOT / "examples/smoke.yaml").read_text())
    data["stages"]["curate"]["sources"] = [str(ROOT / "examples/data/smoke-html")]
    data["storage"] = {"root": str(tmp_path / "store")}
    estimated = _plan(data)
    assert estimated["tokenize"].data["tokens"] == pytest.approx(estimated["curate"].data["bytes"] / 4)
    assert "raw page bytes" in estimated["tokenize"].note and estimated["tokenize"].estimated

    spec = parse_spec(data)
    defs = spec.step_defs()
    quality = _publish(tmp_path / "store", defs["quality"], {"metrics": {"reference_docs": 200, "junk_docs": 200}}, {})
    curate = _publish(tmp_path / "store", defs["curate"], {"metrics": {"docs_in": 314, "docs_out": 248, "chars_out": 211576}},
                      {"quality": quality})
    steps = _plan(data)
    assert steps["curate"].data["text_bytes"] == 211576 and "text_bytes" in steps["curate"].measured
    assert steps["tokenize"].data["tokens"] == pytest.approx(211576 / 4)  # estimated from the measured text
    _publish(tmp_path / "store", defs["tokenize"], {"metrics": {"tokens_train": 48936, "tokens_valid": 5994, "vocab_size": 2048}},
             {"corpus": curate})
    steps = _plan(data)
    assert steps["tokenize"].data == {"tokens": 48936 + 5994, "valid_tokens": 5994}
    assert steps["tokenize"].basis == "spec; measured tokens, valid_tokens"
    assert steps["evaluate"].data["tokens"] == 5994 and "tokens" in steps["evaluate"].measured
    # a build of another config does not count
    data["stages"]["tokenize"]["vocab_size"] = 4096
    assert _plan(data)["tokenize"].estimated
