"""The pretrain stage, for real on CPU with the tiny preset."""

from __future__ import annotations

import json

import pytest
import torch

from factory.errors import InputError, SpecError
from factory.stage import Artifact, StepContext
from factory.stages import pretrain
from factory.train import read_metrics
from factory.train.checkpoint import CheckpointCallback, latest_checkpoint

from tests.builders import learnable_docs

FAST = dict(seq_len=64, micro_batch_size=8, lr=3e-3, warmup_steps=10, decay_fraction=0.2, log_interval=20)


@pytest.fixture(scope="module")
def trained(word_tokens, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    ctx = StepContext("pretrain")
    result = pretrain.run(pretrain.Config(steps=80, checkpoint_interval=40, **FAST), {"tokens": word_tokens}, out, ctx)
    return out, ctx, result


def test_loss_drops_and_outputs_follow_the_contract(trained):
    out, ctx, result = trained
    assert result["initial_loss"] > 5.5  # ~ln(512) at init
    assert result["final_loss"] < 1.0  # the phrases are learnt
    assert result["steps"] == 80 and result["skipped_steps"] == 0
    assert result["tokens_seen"] == 80 * 8 * 64
    assert 150_000 < result["params"] < 300_000  # tiny at a 512-token vocabulary
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "metrics.jsonl", "model"]  # checkpoints removed
    assert {"config.json", "model.safetensors", "generation_config.json"} <= {p.name for p in (out / "model").iterdir()}
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 81))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ctx.tracker.artifacts == [out / "loss.png"]
    assert [step for _, step in ctx.tracker.metrics] == [20, 40, 60, 80]
    assert ctx.tracker.datasets[0]["profile"]["seq_len"] == 64
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model_type"] == "nemotron_h" and config["vocab_size"] == 512
    assert config["layers_block_type"] == ["linear_attention", "mlp", "linear_attention", "full_attention", "mlp"]
    assert config["eos_token_id"] == 0 and config["pad_token_id"] == 1


def test_saved_model_reloads_and_continues_a_learnt_phrase(trained):
    from transformers import AutoModelForCausalLM

    out, _, _ = trained
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(model).__name__ == "NemotronHForCausalLM"
    phrase = learnable_docs(1, seed=0)[0][:10]  # one of the training phrases (same generator as the data)
    prompt = torch.tensor([phrase * 2 + phrase[:3]])  # (1, 23): two repeats, then the start of a third
    generated = model.generate(prompt, max_new_tokens=7, do_sample=False)
    assert generated[0, 23:].tolist() == phrase[3:10]


def _kill_after(step, monkeypatch):
    original = CheckpointCallback.on_step_end

    def on_step_end(self, trainer, metrics):
        original(self, trainer, metrics)
        if metrics.step == step:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(CheckpointCallback, "on_step_end", on_step_end)


# killed mid-interval, and right after a checkpoint lands (every record of that step must already be written)
@pytest.mark.parametrize("kill_step", [6, 8])
def test_a_killed_attempt_resumes_in_the_same_folder(kill_step, word_tokens, tmp_path, monkeypatch):
    config = pretrain.Config(steps=10, checkpoint_interval=4, **{**FAST, "warmup_steps": 2})
    straight = pretrain.run(config, {"tokens": word_tokens}, tmp_path / "a", StepContext("a"))

    with monkeypatch.context() as m:
        _kill_after(kill_step, m)
        with pytest.raises(KeyboardInterrupt):
            pretrain.run(config, {"tokens": word_tokens}, tmp_path / "b", StepContext("b"))
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == f"step-{kill_step // 4 * 4:06d}"
    with open(tmp_path / "b" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": %d, "lo' % (kill_step + 1))  # a record torn by the kill: dropped on resume
    resumed = pretrain.run(config, {"tokens": word_tokens}, tmp_path / "b", StepContext("b"))

    assert resumed["final_loss"] == straight["final_loss"] and resumed["tokens_seen"] == straight["tokens_seen"]
    a, b = read_metrics(tmp_path / "a" / "metrics.jsonl"), read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and len(b) == 10
    assert (tmp_path / "a/model/model.safetensors").read_bytes() == (tmp_path / "b/model/model.safetensors").read_bytes()


def test_missing_or_too_short_token_data_is_an_input_error(word_tokens, tmp_path):
    with pytest.raises(InputError, match="must be a tokens artifact"):
        pretrain.run(pretrain.Config(), {"tokens": Artifact(tmp_path, {})}, tmp_path / "out", StepContext("x"))
    with pytest.raises(InputError, match="fewer than one window"):
        pretrain.run(pretrain.Config(seq_len=100_000), {"tokens": word_tokens}, tmp_path / "out", StepContext("x"))
    with pytest.raises(InputError, match="'tokens'"):
        pretrain.run(pretrain.Config(), {}, tmp_path / "out", StepContext("x"))


def test_config_errors_name_the_field():
    with pytest.raises(SpecError, match=r"model.overrides.hiden_size"):
        pretrain.Config(model={"preset": "tiny", "overrides": {"hiden_size": 8}})
    with pytest.raises(SpecError, match=r"model.preset: unknown preset 'huge'"):
        pretrain.Config(model={"preset": "huge"})
    from factory.kinds import KINDS

    assert KINDS["pretrain"].output == "checkpoint" and KINDS["pretrain"].resumable is True
    fields = pretrain.Config().result_fields()
    assert "log_interval" not in fields and fields["model"] == {"preset": "tiny", "overrides": {}}
    assert all(info.description for info in pretrain.Config.model_fields.values())
