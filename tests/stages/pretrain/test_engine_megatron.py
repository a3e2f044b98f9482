"""`pretrain.engine: megatron` in a spec: every setting the Megatron engine cannot honour is refused at spec load with
one line naming the field, and the smoke recipe runs end to end on it (curate -> tokenize -> pretrain -> evaluate ->
release) into a release that stock transformers loads, with the logits of a Megatron model holding its weights."""

from __future__ import annotations

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from factory.errors import SpecError
from factory.spec import load_spec
from factory.stage import StepContext
from factory.stages import pretrain
from factory.steps import Executor
from factory.train.shell import TrainingShell
from tests.spine import small_corpus, small_spec_data
from tests.traced import assert_ran_inside_closures, run_traced


def spec_with(tmp_path, **pretrain_config):
    data = small_spec_data(tmp_path, pretrain=pretrain_config)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("setting,message", [
    ({"compile": True}, "compile: the factory engine's torch.compile"),
    ({"data_parallel": "fsdp"}, "data_parallel: fsdp is the factory engine's"),
    ({"activation_checkpointing": True}, "activation_checkpointing: Megatron's hybrid Mamba stack recomputes no layers"),
    ({"fused_optimizer": True}, "fused_optimizer: engine megatron picks its optimizer"),
    ({"layout": {"context": 2}}, "layout.context: the factory's batches are not split over context-parallel ranks"),
    ({"layout": {"sharding": "fsdp"}}, "layout.sharding: Megatron FSDP is not built"),
    ({"layout": {"tensor": 2}}, "layout.tensor: 2 does not divide model mamba_groups = 1"),
    ({"expert_parallel": 2}, "expert_parallel: 2 must divide the model's 0 experts"),
    ({"precision": "fp8", "precision_options": {"high_precision_layers": ["model.layers.*.mixer.out_proj"]}},
     "precision.high_precision_layers: .* is not a whole layer"),
    ({"model": {"preset": "tiny", "overrides": {"mlp_activation": "silu"}}}, "mlp_activation: Megatron's hybrid model uses squared ReLU"),
])
def test_a_setting_the_engine_cannot_honour_is_refused_at_spec_load(tmp_path, setting, message):
    with pytest.raises(SpecError, match=f"^stages.pretrain: .*{message}") as refused:
        load_spec(spec_with(tmp_path, engine="megatron", **setting))
    assert "\n" not in str(refused.value)


def test_the_layout_is_the_megatron_engines_only(tmp_path):
    with pytest.raises(SpecError, match="^stages.pretrain: layout: read by engine megatron only"):
        load_spec(spec_with(tmp_path, layout={"tensor": 2}))
    spec = load_spec(spec_with(tmp_path, engine="megatron", layout={"tensor": 2, "data": 2},
                               model={"preset": "tiny", "overrides": {"mamba_groups": 2}}))
    config = spec.stage_config("pretrain")
    assert (config.engine, config.layout.tensor, config.layout.gpus) == ("megatron", 2, 4)
    # the engine changes the result; the layout only float summation order, as the factory's data_parallel
    assert "engine" in config.result_fields() and "layout" not in config.result_fields()


@pytest.mark.slow
def test_the_smoke_recipe_runs_end_to_end_on_the_megatron_engine(tmp_path):
    small_corpus(tmp_path / "html", n=60)
    spec = load_spec(spec_with(tmp_path, engine="megatron", steps=30, checkpoint_interval=10))
    executor = Executor(spec)
    manifests, ran = run_traced(executor)
    assert list(manifests) == ["curate", "tokenize", "pretrain", "evaluate", "release"]
    assert_ran_inside_closures(spec, ran)  # the engine's modules are in pretrain's code version
    assert manifests["pretrain"]["metrics"]["final_loss"] < manifests["pretrain"]["metrics"]["initial_loss"]

    folder = executor.store.folder(f"release/{manifests['release']['fingerprint'][:16]}")
    release = next(p.parent for p in folder.rglob("config.json") if (p.parent / "model.safetensors").is_file())
    # stock transformers; the release's weights are BF16: both sides compute in FP32 on those same values
    model = AutoModelForCausalLM.from_pretrained(release, dtype=torch.float32).eval()
    ids = torch.arange(2, 50).reshape(2, 24) % model.config.vocab_size  # (2, 24)
    with torch.no_grad():
        exported = model(ids).logits
    # a Megatron model built by the engine from the released folder (its weights through MegatronAdapter.from_hf)
    config = pretrain.Config(engine="megatron", seq_len=64)
    with TrainingShell(config, tmp_path / "megatron", StepContext("parity"), engine=_engine()) as shell:
        megatron = shell.prepare(AutoModelForCausalLM.from_pretrained(release, dtype=torch.float32)).eval()
        with torch.no_grad():
            logits = megatron(ids, None, _causal(ids))[..., : model.config.vocab_size]
    assert (logits - exported).abs().max() < 1e-4 * exported.abs().max()


def _engine():
    from factory.engines.megatron.engine import MegatronEngine

    return MegatronEngine()


def _causal(ids):
    from factory.engines.megatron.engine import causal_mask

    return causal_mask(ids.shape[1], ids.device)
