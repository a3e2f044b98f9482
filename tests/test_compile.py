"""The compiled KFP IR for the smoke spec is kept as a golden file; regenerate with UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from cli.main import compile_pipeline
from factory.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "smoke-pipeline.yaml"


def test_smoke_pipeline_matches_golden(tmp_path):
    out = compile_pipeline(load_spec(ROOT / "examples" / "smoke.yaml"), tmp_path / "p.yaml")
    text = out.read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "compiled pipeline drifted; rerun with UPDATE_GOLDEN=1 if intended"


def test_compiled_dag_wires_stage_inputs(tmp_path):
    ir = next(yaml.safe_load_all(compile_pipeline(load_spec(ROOT / "examples" / "smoke.yaml"), tmp_path / "p.yaml").read_text()))
    steps = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert sorted(steps) == ["curate", "evaluate", "pretrain", "quality", "release", "tokenize"]
    assert steps["release"]["dependentTasks"] == ["evaluate", "pretrain", "tokenize"]
    assert steps["curate"]["inputs"]["artifacts"]["quality"]["taskOutputArtifact"]["producerTask"] == "quality"
    assert "synthetic" not in steps["tokenize"]["inputs"]["artifacts"]  # optional, and no synth stage here
    ev = steps["evaluate"]["inputs"]["artifacts"]
    assert ev["model"]["taskOutputArtifact"] == {"outputArtifactKey": "artifact", "producerTask": "pretrain"}
    assert ir["root"]["dag"]["tasks"]["finish"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    # The spec travels as the pipeline's parameter, exactly as written (relative paths, not machine paths).
    default = ir["root"]["inputDefinitions"]["parameters"]["spec_json"]["defaultValue"]
    assert "examples/data/smoke-html" in default and "/work" not in default


def test_synth_stage_feeds_tokenize_as_its_optional_input(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "smoke.yaml").read_text())
    data["stages"]["synth"] = {"generator": {"kind": "openai", "base_url": "http://vllm:8000", "model": "generator"}}
    ir = next(yaml.safe_load_all(compile_pipeline(parse_spec(data), tmp_path / "p.yaml").read_text()))
    steps = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert steps["synth"]["dependentTasks"] == ["curate"]
    assert steps["tokenize"]["dependentTasks"] == ["curate", "synth"]
    wired = {k: v["taskOutputArtifact"]["producerTask"] for k, v in steps["tokenize"]["inputs"]["artifacts"].items()}
    assert wired == {"corpus": "curate", "synthetic": "synth"}
    tokenize = ir["components"]["comp-tokenize"]["inputDefinitions"]["artifacts"]
    assert tokenize["synthetic"]["isOptional"] is True and not tokenize["corpus"].get("isOptional")


GPU_GOLDEN = Path(__file__).parent / "golden" / "gpu-pipeline.yaml"


def gpu_spec(gpus: int):
    data = yaml.safe_load((ROOT / "examples" / "smoke.yaml").read_text())
    data["resources"]["pretrain"] = {
        "cpu": "16", "memory": "128G", "gpus": gpus, "gpu_type": "nvidia.com/gpu",
        "node_selector": {"nvidia.com/gpu.product": "H100-SXM"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "shm_size": "64Gi", "secrets": {"AWS_ACCESS_KEY_ID": "s3-creds/access-key", "HF_TOKEN": "hf/token"},
    }
    return parse_spec(data)


def test_gpu_resources_compile_into_the_ir(tmp_path):
    """One GPU: the step's own pod trains, so it carries the GPU, placement and secrets (golden file)."""
    text = compile_pipeline(gpu_spec(1), tmp_path / "g.yaml").read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GPU_GOLDEN.write_text(text)
    assert text == GPU_GOLDEN.read_text(), "compiled GPU pipeline drifted; rerun with UPDATE_GOLDEN=1 if intended"
    ir, platform = list(yaml.safe_load_all(text))
    res = ir["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    assert res["accelerator"]["resourceCount"] == "1" and res["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert res["cpuLimit"] == 16.0 and res["memoryLimit"] == 128.0
    assert ir["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["image"] == "nemotron-factory/factory-gpu:0.1.0"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "H100-SXM"}
    assert k8s["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    assert k8s["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and k8s["emptyDirMounts"][0]["medium"] == "Memory"
    secrets = {s["secretName"]: s["keyToEnv"] for s in k8s["secretAsEnv"]}
    assert secrets["s3-creds"] == [{"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "access-key"}]
    assert secrets["hf"] == [{"envVar": "HF_TOKEN", "secretKey": "token"}]

    assert k8s["podMetadata"]["labels"] == {"nemotron-factory/pipeline-step": "true"}


def test_multi_gpu_stage_compiles_to_a_light_launcher_step(tmp_path):
    """Eight GPUs: the step only launches and watches a TrainJob, so its pod asks for no GPU or node placement."""
    ir, platform = list(yaml.safe_load_all(compile_pipeline(gpu_spec(8), tmp_path / "l.yaml").read_text()))
    container = ir["deploymentSpec"]["executors"]["exec-pretrain"]["container"]
    assert "resources" not in container and container["image"] == "nemotron-factory/factory-cpu:0.1.0"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert "nodeSelector" not in k8s and "tolerations" not in k8s
    assert {s["secretName"] for s in k8s["secretAsEnv"]} == {"s3-creds", "hf"}


def _dag_shape(ir: dict) -> dict:
    tasks = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    return {n: {"component": v["componentRef"]["name"], "after": v.get("dependentTasks", []),
                "inputs": {k: a["taskOutputArtifact"]["producerTask"] for k, a in v["inputs"].get("artifacts", {}).items()}}
            for n, v in tasks.items()}


# The smoke spec's DAG as the pipeline compiled before steps were named (tests/golden at that commit).
SMOKE_DAG_BEFORE_NAMED_STEPS = {
    "quality": {"component": "comp-quality", "after": [], "inputs": {}},
    "curate": {"component": "comp-curate", "after": ["quality"], "inputs": {"quality": "quality"}},
    "tokenize": {"component": "comp-tokenize", "after": ["curate"], "inputs": {"corpus": "curate"}},
    "pretrain": {"component": "comp-pretrain", "after": ["tokenize"], "inputs": {"tokens": "tokenize"}},
    "evaluate": {"component": "comp-evaluate", "after": ["pretrain", "tokenize"], "inputs": {"model": "pretrain", "tokens": "tokenize"}},
    "release": {"component": "comp-release", "after": ["evaluate", "pretrain", "tokenize"],
                "inputs": {"evaluation": "evaluate", "model": "pretrain", "tokens": "tokenize"}},
}


def test_a_stages_spec_compiles_to_the_same_dag_as_before_named_steps(tmp_path):
    ir = next(yaml.safe_load_all(compile_pipeline(load_spec(ROOT / "examples" / "smoke.yaml"), tmp_path / "p.yaml").read_text()))
    assert _dag_shape(ir) == SMOKE_DAG_BEFORE_NAMED_STEPS
    assert sorted(ir["root"]["dag"]["tasks"]) == ["exit-handler-1", "finish"]
    # The plan travels as a pipeline parameter; compiled, it is empty (it must not hold this machine's digests).
    assert ir["root"]["inputDefinitions"]["parameters"]["plan_json"]["defaultValue"] == ""
    pretrain = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]
    assert pretrain["plan"] == {"componentInputParameter": "pipelinechannel--plan_json"}
    assert pretrain["step"] == {"runtimeValue": {"constant": "pretrain"}}


def named_steps_data() -> dict:
    """The smoke spec as named steps, with evaluate twice: on the pretrained model and with other settings."""
    data = yaml.safe_load((ROOT / "examples" / "smoke.yaml").read_text())
    stages = data.pop("stages")
    data["steps"] = {
        "quality": {"kind": "quality", "config": stages["quality"]},
        "curate": {"kind": "curate", "config": stages["curate"], "inputs": {"quality": "quality"}},
        "tokenize": {"kind": "tokenize", "config": stages["tokenize"], "inputs": {"corpus": "curate"}},
        "pretrain": {"kind": "pretrain", "config": stages["pretrain"], "inputs": {"tokens": "tokenize"}},
        "eval_base": {"kind": "evaluate", "config": stages["evaluate"], "inputs": {"model": "pretrain", "tokens": "tokenize"}},
        "eval_long": {"kind": "evaluate", "config": {**stages["evaluate"], "max_new_tokens": 48}, "inputs": {"model": "pretrain", "tokens": "tokenize"}},
        "release": {"kind": "release", "config": stages["release"], "inputs": {"model": "pretrain", "tokens": "tokenize", "evaluation": "eval_long"}},
    }
    return data


def test_two_steps_of_one_kind_compile_to_two_tasks_of_one_function(tmp_path):
    ir = next(yaml.safe_load_all(compile_pipeline(parse_spec(named_steps_data()), tmp_path / "n.yaml").read_text()))
    shape = _dag_shape(ir)
    assert sorted(shape) == ["curate", "eval-base", "eval-long", "pretrain", "quality", "release", "tokenize"]
    assert shape["eval-base"]["inputs"] == shape["eval-long"]["inputs"] == {"model": "pretrain", "tokens": "tokenize"}
    assert shape["release"]["inputs"]["evaluation"] == "eval-long"
    executors = ir["deploymentSpec"]["executors"]
    # Both run the evaluate kind's one function, each told its own step name.
    assert "def evaluate(" in executors["exec-eval-base"]["container"]["command"][-1]
    assert executors["exec-eval-base"]["container"]["command"] == executors["exec-eval-long"]["container"]["command"]
    steps = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert steps["eval-long"]["inputs"]["parameters"]["step"] == {"runtimeValue": {"constant": "eval_long"}}


def test_the_charts_config_map_reaches_every_step_pod(tmp_path):
    """`cluster.config_map` (the chart's `<release>-config`) gives every step pod, and the exit handler, the
    store and tracking settings that factory.endpoints reads."""
    data = yaml.safe_load((ROOT / "examples/smoke.yaml").read_text())
    data["cluster"] = {"config_map": "factory-config"}
    text = compile_pipeline(parse_spec(data), tmp_path / "c.yaml").read_text()
    _, platform = list(yaml.safe_load_all(text))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(executors) == 7  # six steps and the exit handler
    for name, k8s in executors.items():
        (cm,) = k8s["configMapAsEnv"]
        assert cm["configMapName"] == "factory-config", name
        assert sorted(e["envVar"] for e in cm["keyToEnv"]) == [
            "FACTORY_S3_ENDPOINT_URL", "FACTORY_S3_REGION", "FACTORY_STORE_ROOT", "FACTORY_TRACKING_URI"]
        assert all(e["configMapKey"] == e["envVar"] for e in cm["keyToEnv"])
