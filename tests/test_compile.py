"""The compiled KFP IR for the smoke spec is kept as a golden file; regenerate with UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from factory.cli import compile_pipeline
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
    ir = yaml.safe_load(compile_pipeline(load_spec(ROOT / "examples" / "smoke.yaml"), tmp_path / "p.yaml").read_text())
    steps = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert sorted(steps) == ["curate", "evaluate", "pretrain", "release", "tokenize"]
    assert steps["release"]["dependentTasks"] == ["evaluate", "pretrain", "tokenize"]
    ev = steps["evaluate"]["inputs"]["artifacts"]
    assert ev["model"]["taskOutputArtifact"] == {"outputArtifactKey": "artifact", "producerTask": "pretrain"}
    assert ir["root"]["dag"]["tasks"]["finish"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    # The spec travels as the pipeline's parameter, exactly as written (relative paths, not machine paths).
    default = ir["root"]["inputDefinitions"]["parameters"]["spec_json"]["defaultValue"]
    assert "examples/data/smoke-html" in default and "/work" not in default


def test_gpu_resources_compile_into_the_ir(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "smoke.yaml").read_text())
    data["resources"]["pretrain"] = {
        "cpu": "16", "memory": "128G", "gpus": 8, "gpu_type": "nvidia.com/gpu",
        "node_selector": {"nvidia.com/gpu.product": "H100-SXM"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "shm_size": "64Gi", "secrets": {"AWS_ACCESS_KEY_ID": "s3-creds/access-key", "HF_TOKEN": "hf/token"},
    }
    ir_docs = list(yaml.safe_load_all(compile_pipeline(parse_spec(data), tmp_path / "g.yaml").read_text()))
    ir, platform = ir_docs[0], ir_docs[1]
    res = ir["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    assert res["accelerator"]["resourceCount"] == "8" and res["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert res["cpuLimit"] == 16.0 and res["memoryLimit"] == 128.0
    assert ir["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["image"] == "nemotron-factory:0.1.0-gpu"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "H100-SXM"}
    assert k8s["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    assert k8s["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and k8s["emptyDirMounts"][0]["medium"] == "Memory"
    secrets = {s["secretName"]: s["keyToEnv"] for s in k8s["secretAsEnv"]}
    assert secrets["s3-creds"] == [{"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "access-key"}]
    assert secrets["hf"] == [{"envVar": "HF_TOKEN", "secretKey": "token"}]
