"""`factory plan`: per-step verdicts from a spec, training budgets, the CLI and its MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from factory.cost.estimate import GPUS, training_budget
from factory.cost.flops import flops_per_token
from factory.cost.published import SHAPES
from factory.errors import SpecError
from factory.plan import plan_spec, summary_line
from factory.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _cluster(**pretrain_resources) -> dict:
    """examples/cluster.yaml with the pretrain step on Nano 2 12B at 8k context in FP8 on 2 x 8 H100."""
    data = yaml.safe_load((ROOT / "examples/cluster.yaml").read_text())
    data["model"] = {"preset": "nemotron_nano_12b_v2"}
    data["stages"]["tokenize"]["vocab_size"] = 131072
    data["stages"]["pretrain"].update(seq_len=8192, micro_batch_size=1, steps=1000, precision="fp8")
    data["resources"]["pretrain"].update(pretrain_resources)
    data["resources"]["release"]["memory"] = "64G"  # release loads the FP32 checkpoint: 49 GB
    return data


def test_data_parallel_12b_does_not_fit_and_names_the_largest_term():
    # plain data parallel runs the factory's trainer: transformers' PyTorch Mamba path saves its chunk tensors
    spec = parse_spec(_cluster())
    line, fits = summary_line(spec)
    assert not fits
    assert "pretrain" in line and "DOES NOT FIT (largest: activations)" in line
    step = {s.step: s for s in plan_spec(spec).steps}["pretrain"]
    assert step.budget == 80 * 1024**3 and step.memory_total > step.budget


def test_tensor_parallel_with_the_distributed_optimizer_fits_and_costs_what_the_flops_say():
    spec = parse_spec(_cluster(parallel={"data": 4, "tensor": 4, "sharding": "optimizer"}))
    report = plan_spec(spec, mfu=0.5, price_per_gpu_hour=3.0)
    step = {s.step: s for s in report.steps}["pretrain"]
    assert step.fits and report.fits and "engine megatron" in step.note
    tokens = 1000 * 8192 * 1 * 4  # steps x seq_len x micro-batch x data-parallel replicas
    assert step.data["tokens"] == tokens
    assert step.flops == pytest.approx(flops_per_token(SHAPES["nemotron_nano_12b_v2"](), 8192).training * tokens)
    hours = step.flops / (16 * GPUS["H100"].peak["fp8"] * 0.5) / 3600
    assert step.hours == pytest.approx(hours) and step.gpu_hours == pytest.approx(16 * hours)
    assert step.cost == pytest.approx(16 * hours * 3.0)
    assert "pretrain" in report.table() and json.loads(report.to_json())["steps"][4]["step"] == "pretrain"


def test_a_layout_that_does_not_cover_the_gpus_is_a_spec_error():
    with pytest.raises(SpecError, match=r"resources\.pretrain.*parallel: data x tensor x pipeline x context = 8, but nodes x gpus = 16"):
        parse_spec(_cluster(parallel={"data": 2, "tensor": 4}))


def test_training_budgets_at_megatron_bridge_h100_fp8_throughput():
    # Megatron-Bridge's Llama 3 8B FP8 run on H100 achieves 744 TFLOP/s per GPU: 37.6% of the FP8 dense peak
    mfu = 744e12 / GPUS["H100"].peak["fp8"]
    h56 = training_budget(SHAPES["nemotron_h_56b"](), 20e12, 8192, mfu=mfu)
    nano = training_budget(SHAPES["nemotron_nano_12b_v2"](), 20e12, 8192, mfu=mfu)
    assert h56.tflops_per_gpu == pytest.approx(744)
    assert h56.flops == pytest.approx(6.85e24, rel=0.01) and nano.flops == pytest.approx(1.45e24, rel=0.01)
    assert h56.gpu_days == pytest.approx(h56.flops / 744e12 / 86400)
    assert h56.days_on(6144) == pytest.approx(17.3, rel=0.02)
    assert nano.gpu_days < h56.gpu_days / 4


def test_cli_prints_a_table_json_and_records_an_mlflow_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from cli.main import app
    from factory.cost.tracking import TAG_KIND, TAG_SPEC_DIGEST, plan_run_for, spec_digest
    from factory.lineage import Lineage
    from factory.spec import load_spec

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((ROOT / "examples/smoke.yaml").read_text())
    data["stages"]["curate"]["sources"] = [str(ROOT / "examples/data/smoke-html")]
    Path("spec.yaml").write_text(yaml.safe_dump(data))
    runner = CliRunner()
    table = runner.invoke(app, ["plan", "spec.yaml", "--mfu", "0.3", "--price", "4"])
    assert table.exit_code == 0, table.output
    assert "pretrain" in table.output and "fits (largest: activations)" in table.output
    assert "mlflow run" not in table.output  # a plan is logged only when asked
    spec = load_spec("spec.yaml").resolved()
    assert not Path(spec.tracking_uri().removeprefix("sqlite:///")).exists()
    result = runner.invoke(app, ["plan", "spec.yaml", "--json", "--context", "2048", "--log"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # log lines go to stderr
    steps = {s["step"]: s for s in report["steps"]}
    assert report["fits"] and steps["evaluate"]["data"]["context"] == 2048 and steps["release"]["data"]["serve_context"] == 2048
    assert steps["curate"]["data"]["files"] > 100
    client = MlflowClient(spec.tracking_uri())
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags[TAG_KIND] == "plan" and run.data.tags[TAG_SPEC_DIGEST] == spec_digest(spec)
    assert run.data.metrics["pretrain.flops"] == pytest.approx(steps["pretrain"]["flops"])
    assert run.data.params["mfu"] == "0.4"
    assert plan_run_for(spec, Lineage(spec.tracking_uri(), spec.experiment())) == report["mlflow_run_id"]
    bad = runner.invoke(app, ["plan", "spec.yaml", "--mfu", "1.5"])
    assert bad.exit_code != 0


def test_submit_stops_before_launch_when_a_step_does_not_fit(tmp_path):
    from cli.main import app

    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump(_cluster()))
    # the host is never reached: the plan refuses first, with one line, exit 2
    result = CliRunner().invoke(app, ["submit", str(spec), "--host", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "DOES NOT FIT (largest: activations)" in result.output and "pass --force" in result.output
    # --force gets past the plan to the (unreachable) host
    forced = CliRunner().invoke(app, ["submit", str(spec), "--host", "http://127.0.0.1:9", "--force"])
    # (cli.main.main turns this UserError into one line and exit 2; CliRunner shows the exception itself)
    assert "cannot submit to KFP at http://127.0.0.1:9" in str(forced.exception)
