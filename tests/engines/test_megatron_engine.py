"""The Megatron engine trains for real on CPU through the pretrain stage: the tiny preset (dense and MoE) learns, the
exported Hugging Face model's logits equal the Megatron model's, it reaches the factory engine's loss on the same
data, tensor and data parallelism on 2 torchrun ranks give the single process's run, and a run killed with SIGKILL
resumes from its distributed checkpoint into the uninterrupted run, bit for bit."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from factory.engines.megatron import engine as megatron_engine
from factory.engines.megatron.engine import causal_mask, list_checkpoints
from factory.errors import InputError, SpecError, UserError
from factory.stage import StepContext
from factory.stages import pretrain
from factory.train import read_metrics
from factory.train.trainer import Callback
from tests import builders
from tests.kill9 import driver_env

DRIVER = Path(__file__).parents[1] / "train" / "kind_driver.py"
FAST = dict(seq_len=64, micro_batch_size=8, lr=3e-3, warmup_steps=10, decay_fraction=0.2, log_interval=20)
PROBE = torch.tensor([builders.learnable_docs(1, seed=0)[0][:40], builders.learnable_docs(1, seed=5)[0][:40]])  # (2, 40)


class MegatronLogits(Callback):
    """Records the Megatron model's logits on PROBE at the end of training, before the export runs."""

    def on_train_end(self, trainer) -> None:
        model = trainer.objective.model  # the MambaModel in Megatron DDP
        model.eval()
        with torch.no_grad():
            self.logits = model(PROBE, None, causal_mask(PROBE.shape[1], PROBE.device)).float()  # (2, 40, padded V)


def hf_logits(model_dir: Path) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()  # stock transformers, no code of ours
    assert type(model).__name__ == "NemotronHForCausalLM"
    with torch.no_grad():
        return model(PROBE).logits.float()


def run(config: dict, inputs: dict, out: Path, *callbacks: Callback) -> dict:
    return pretrain.run(pretrain.Config(**config), inputs, out, StepContext("pretrain", callbacks=list(callbacks)))


@pytest.fixture(scope="module")
def trained(word_tokens, tmp_path_factory):
    out, probe = tmp_path_factory.mktemp("megatron"), MegatronLogits()
    ctx = StepContext("pretrain", callbacks=[probe])
    result = pretrain.run(pretrain.Config(engine="megatron", steps=60, checkpoint_interval=30, **FAST),
                          {"tokens": word_tokens}, out, ctx)
    return out, ctx, result, probe


def test_the_tiny_preset_learns_and_the_outputs_follow_the_contract(trained):
    out, ctx, result, _ = trained
    assert result["initial_loss"] > 5.5 and result["final_loss"] < 0.5  # ~ln(512) at init; the phrases are learnt
    assert result["steps"] == 60 and result["skipped_steps"] == 0 and result["tokens_seen"] == 60 * 8 * 64
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "metrics.jsonl", "model"]  # checkpoints removed
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, 61))
    assert [step for _, step in ctx.tracker.metrics] == [20, 40, 60] and ctx.tracker.artifacts == [out / "loss.png"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model_type"] == "nemotron_h" and config["vocab_size"] == 512 and config["eos_token_id"] == 0


def test_the_exported_model_gives_the_megatron_models_logits(trained):
    out, _, _, probe = trained
    megatron, exported = probe.logits, hf_logits(out / "model")
    assert megatron.shape == exported.shape == (2, 40, 512)
    # the same weights; float differences only (Megatron's (s, b, h) layout and its attention kernel)
    assert (megatron - exported).abs().max() < 1e-4 * megatron.abs().max()
    assert torch.equal(megatron.argmax(-1), exported.argmax(-1))


def test_moe_layers_export_with_the_megatron_models_logits(word_tokens, tmp_path):
    probe = MegatronLogits()
    result = run({**FAST, "engine": "megatron", "steps": 8, "warmup_steps": 2, "checkpoint_interval": 0,
                  "model": {"preset": "tiny_moe"}},
                 {"tokens": word_tokens}, tmp_path, probe)
    assert result["final_loss"] < result["initial_loss"]
    exported = hf_logits(tmp_path / "model")
    # routing included: the router's learned expert bias travels as transformers' e_score_correction_bias
    assert (probe.logits - exported).abs().max() < 1e-4 * probe.logits.abs().max()


def test_it_reaches_the_factory_engines_loss_on_the_same_data(word_tokens, trained, tmp_path):
    """From one init checkpoint both engines take the same steps (float rounding apart); from scratch (each its own
    initialisation) they end within 0.05 nats of each other."""
    init = builders.checkpoint(tmp_path / "init", builders.tokenizer("word"), "tiny", seed=1)
    losses = {}
    for engine in ("factory", "megatron"):
        run({"engine": engine, "steps": 20, "checkpoint_interval": 0, **FAST}, {"tokens": word_tokens, "init": init},
            tmp_path / engine)
        losses[engine] = [r["loss"] for r in read_metrics(tmp_path / engine / "metrics.jsonl")]
    assert losses["megatron"] == pytest.approx(losses["factory"], rel=1e-5)

    scratch = run({"steps": 60, "checkpoint_interval": 0, **FAST}, {"tokens": word_tokens}, tmp_path / "scratch")
    assert abs(trained[2]["final_loss"] - scratch["final_loss"]) < 0.05


def test_refusals_are_one_line(word_tokens, tmp_path, monkeypatch):
    tokens = {"tokens": word_tokens}
    with pytest.raises(SpecError, match=r"^precision: on a CPU the Megatron engine runs"):
        run({**FAST, "engine": "megatron", "precision": "fp8", "steps": 2, "warmup_steps": 0}, tokens, tmp_path / "fp8")
    with pytest.raises(SpecError, match=r"^layout: data x tensor x pipeline x context = 2, but 1 rank run"):
        run({**FAST, "engine": "megatron", "layout": {"data": 2}, "steps": 2, "warmup_steps": 0}, tokens, tmp_path / "lay")
    gpt2 = builders.checkpoint(tmp_path / "gpt2", builders.tokenizer("word"), builders.GPT2)
    with pytest.raises(InputError, match="trains NemotronH models .* 'gpt2'"):
        run({**FAST, "engine": "megatron", "steps": 2, "warmup_steps": 0}, {**tokens, "init": gpt2}, tmp_path / "gpt2-run")
    real = megatron_engine.importlib.util.find_spec
    monkeypatch.setattr(megatron_engine.importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    with pytest.raises(UserError, match="psutil is not installed.*hangs.*pip install psutil"):
        run({**FAST, "engine": "megatron", "steps": 2, "warmup_steps": 0}, tokens, tmp_path / "psutil")


# --- real processes: torchrun and SIGKILL --------------------------------------------------------------------------
TWO_GROUPS = {"preset": "tiny", "overrides": {"mamba_groups": 2}}  # tensor parallel 2 splits the Mamba groups too
SMALL = {"seq_len": 32, "micro_batch_size": 4, "steps": 10, "warmup_steps": 1, "log_interval": 1, "checkpoint_interval": 2,
         "keep_checkpoints": 2, "engine": "megatron", "model": TWO_GROUPS}


def launch(folders: dict, runs: list[tuple[str, dict]], log: Path, nproc: int = 1, *extra: str) -> subprocess.Popen:
    """tests/train/kind_driver.py running pretrain `runs` (out folder, config) one after the other, in one process or
    under torchrun; its output to `log` (a file, never an unread pipe)."""
    args = [a for out, config in runs for a in ("pretrain", out, json.dumps(config))]
    head = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc-per-node", str(nproc)]
    with open(log, "a") as fh:
        return subprocess.Popen([*head, str(DRIVER), json.dumps({"pretrain": folders}), *args, *extra],
                                env=driver_env(), stdout=fh, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def small_tokens(tmp_path_factory):
    return builders.tokens(tmp_path_factory.mktemp("small_tokens"), builders.tokenizer("word"),
                           {"train": builders.learnable_docs(120, seed=0)})


@pytest.fixture(scope="module")
def straight(small_tokens, tmp_path_factory) -> Path:
    """SMALL in one process, uninterrupted (in this one: the same kernels on one thread as a driver process)."""
    out = tmp_path_factory.mktemp("straight")
    run(SMALL, {"tokens": small_tokens}, out)
    return out


def test_tensor_and_data_parallel_on_two_ranks_give_the_single_process_run(small_tokens, straight, tmp_path):
    folders, log = {"tokens": str(small_tokens.path)}, tmp_path / "log.txt"
    # one torchrun launch for both layouts; the data-parallel run halves the rows per rank (the same global batch)
    two = launch(folders, [(str(tmp_path / "tensor"), {**SMALL, "layout": {"tensor": 2}}),
                           (str(tmp_path / "data"), {**SMALL, "micro_batch_size": 2})], log, 2)
    assert two.wait(timeout=600) == 0, log.read_text()[-4000:]
    want = read_metrics(straight / "metrics.jsonl")
    weights = AutoModelForCausalLM.from_pretrained(straight / "model").state_dict()
    for layout in ("tensor", "data"):
        records = read_metrics(tmp_path / layout / "metrics.jsonl")  # one writer: rank 0
        assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in want], rel=1e-5), layout
        assert [r["tokens"] for r in records] == [r["tokens"] for r in want]
        exported = AutoModelForCausalLM.from_pretrained(tmp_path / layout / "model").state_dict()  # whole, gathered
        assert exported.keys() == weights.keys()
        assert all(torch.allclose(exported[k], weights[k], atol=1e-5) for k in weights), layout


def test_a_run_killed_with_sigkill_resumes_into_the_uninterrupted_run(small_tokens, straight, tmp_path):
    folders, log = {"tokens": str(small_tokens.path)}, tmp_path / "log.txt"
    proc = launch(folders, [(str(tmp_path / "killed"), SMALL)], log, 1, "--step-sleep", "0.3")
    deadline = time.monotonic() + 300
    while not (found := list_checkpoints(tmp_path / "killed" / "checkpoints")) or found[-1].name < "step-000005":
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (tmp_path / "killed" / "model").exists()
    assert launch(folders, [(str(tmp_path / "killed"), SMALL)], log).wait(timeout=600) == 0, log.read_text()[-4000:]

    want, resumed = read_metrics(straight / "metrics.jsonl"), read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 11))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in want]  # bit for bit
    assert all(math.isfinite(r["loss"]) for r in resumed)
    assert (tmp_path / "killed/model/model.safetensors").read_bytes() == (straight / "model/model.safetensors").read_bytes()
