"""Minitron pruning of the dense transformers users import (Llama, Qwen2, Qwen3, Mistral), on the tiny random models of
tests/builders/architectures.py: importance, the exact-equivalence check of the surgery, stock transformers loading the
result, the refusals, and the stage run for real."""

from __future__ import annotations

import json

import pytest
import torch

from factory.errors import SpecError
from factory.model.checkpoints import load_model
from factory.stage import StepContext
from factory.stages.compress.config import Config, PruneTarget
from factory.stages.compress.dense import check_dense, kept_units, measure_dense_importance, prune_dense
from factory.stages.compress.search import Budget, SearchSpace
from tests.builders import publish
from tests.builders.architectures import model_folder_of

DENSE = ("llama", "qwen2", "qwen3", "mistral")
# every width pruned (residual 64 -> 48, MLP 128 -> 96, query heads 4 -> 2 of 2 KV groups) and one of two layers dropped
TARGET = PruneTarget(hidden_size=48, intermediate_size=96, num_attention_heads=2, drop_layers=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each architecture's tiny model, its weights (norms included) perturbed so every unit differs from its peers."""
    out = {}
    for arch in DENSE:
        model = load_model(model_folder_of(arch, tmp_path_factory.mktemp(arch) / "model"))
        torch.manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        out[arch] = model
    return out


@pytest.fixture(scope="module")
def windows():
    return torch.randint(0, 400, (4, 17), generator=torch.Generator().manual_seed(2))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def masked_logits(model, kept, ids):
    """The unpruned `model`'s logits with every unit `kept` leaves out silenced, the reference the surgery must equal:
    each norm reading the residual stream normalises over the kept channels only and outputs zero on the others (so no
    pruned channel reaches a linear or lm_head), o_proj sees zero from dropped heads, down_proj from dropped neurons,
    and a dropped layer passes its input through."""
    c = model.config
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    channel = torch.zeros(c.hidden_size)
    channel[kept.hidden] = 1

    def masked_norm(module, args, _out):
        x = args[0].float()  # (B, T, H)
        var = x[..., kept.hidden].pow(2).mean(-1, keepdim=True)
        return module.weight * (x * torch.rsqrt(var + module.variance_epsilon)) * channel

    def times(mask):
        return lambda _m, args: (args[0] * mask,)

    layers = model.model.layers
    hooks = [model.model.norm.register_forward_hook(masked_norm)]
    for i, layer in enumerate(layers):
        if i not in kept.layers:
            hooks.append(layer.register_forward_hook(lambda _m, args, _out: args[0]))
            continue
        neurons = torch.zeros(c.intermediate_size)
        neurons[kept.neurons[i]] = 1
        heads = torch.zeros(c.num_attention_heads)
        heads[kept.heads[i]] = 1
        hooks += [layer.input_layernorm.register_forward_hook(masked_norm),
                  layer.post_attention_layernorm.register_forward_hook(masked_norm),
                  layer.mlp.down_proj.register_forward_pre_hook(times(neurons)),
                  layer.self_attn.o_proj.register_forward_pre_hook(times(heads.repeat_interleave(hd)))]
    try:
        return _logits(model, ids)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("arch", DENSE)
def test_pruned_model_equals_the_masked_original_and_loads_in_stock_transformers(arch, models, windows, tmp_path):
    from transformers import AutoModelForCausalLM

    model = models[arch]
    imp = measure_dense_importance(model, windows, batch_size=4)
    kept = kept_units(model.config, imp, TARGET)
    pruned = prune_dense(model, imp, TARGET)
    reference = masked_logits(model, kept, windows)
    torch.testing.assert_close(_logits(pruned, windows), reference, rtol=1e-5, atol=1e-5)
    assert (reference - _logits(model, windows)).abs().max() > 1e-2  # the pruning did change the model

    pruned.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    c = loaded.config
    assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.num_hidden_layers) == (48, 96, 2, 2, 16, 1)
    assert json.loads((tmp_path / "config.json").read_text())["head_dim"] == 16
    if getattr(c, "layer_types", None) is not None:
        assert len(c.layer_types) == 1
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(_logits(loaded, windows), _logits(pruned, windows), rtol=0, atol=0)
    out = loaded.generate(windows[:1, :5], max_new_tokens=4, do_sample=False)
    # greedy generation with the KV cache equals the argmax of a full forward pass over the generated text
    assert torch.equal(_logits(loaded, out[:, :-1])[0, 4:].argmax(-1), out[0, 5:])


def test_tied_embeddings_stay_tied_and_exact(models, windows, tmp_path):
    """Small Qwen releases tie lm_head to the embedding: the pruned model keeps one shared matrix, equal to the masked
    original, and loads so from its folder."""
    from transformers import AutoModelForCausalLM

    config = models["qwen2"].config.to_dict() | {"tie_word_embeddings": True}
    torch.manual_seed(3)
    tied = type(models["qwen2"])(type(models["qwen2"].config).from_dict(config)).eval()
    imp = measure_dense_importance(tied, windows, layer_loss=False)
    pruned = prune_dense(tied, imp, PruneTarget(hidden_size=48, intermediate_size=96))
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight
    reference = masked_logits(tied, kept_units(tied.config, imp, PruneTarget(hidden_size=48, intermediate_size=96)), windows)
    torch.testing.assert_close(_logits(pruned, windows), reference, rtol=1e-5, atol=1e-5)
    pruned.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(_logits(loaded, windows), _logits(pruned, windows), rtol=0, atol=0)


def test_no_op_target_keeps_logits_exactly(models, windows):
    """Qwen2 carries q/k/v biases: a target that prunes nothing keeps every tensor, bias included."""
    model = models["qwen2"]
    pruned = prune_dense(model, measure_dense_importance(model, windows, layer_loss=False), PruneTarget())
    torch.testing.assert_close(_logits(pruned, windows), _logits(model, windows), rtol=0, atol=0)


def test_importance_sees_silenced_units(models, windows):
    """A neuron whose gate row is zero has silu(0) * up = 0 at down_proj's input, and the query heads of a KV group whose
    v_proj rows are zero attend over zero values: both score exactly 0, every other unit does not."""
    model = load_model_like(models["llama"])
    with torch.no_grad():
        model.model.layers[0].mlp.gate_proj.weight[5].zero_()
        model.model.layers[1].self_attn.v_proj.weight[16:32].zero_()  # KV head 1: query heads 2 and 3
    imp = measure_dense_importance(model, windows, batch_size=4)
    assert imp.mlp[0][5] == 0 and imp.mlp[0].count_nonzero() == 127
    assert imp.attn_heads[1].tolist()[2:] == [0, 0] and bool((imp.attn_heads[1][:2] > 0).all())
    assert imp.hidden.shape == (64,) and bool((imp.hidden > 0).all())
    assert ((imp.block_influence > 0) & (imp.block_influence < 2)).all()
    assert imp.loss_increase.shape == (2,) and torch.isfinite(imp.loss_increase).all()


def load_model_like(model):
    copy = type(model)(model.config).eval()
    copy.load_state_dict(model.state_dict())
    return copy


def test_query_heads_are_ranked_within_their_kv_group(models, windows):
    """Scores [1, 9, 8, 2] over two KV groups of two heads keep head 1 of group 0 and head 2 of group 1, not heads 1
    and 2 of one ranking: every group keeps one head, so the GQA layout holds. q_proj keeps those heads' rows."""
    model = models["llama"]
    imp = measure_dense_importance(model, windows, layer_loss=False)
    imp.attn_heads[0] = torch.tensor([1.0, 9, 8, 2])
    imp.attn_heads[1] = torch.tensor([9.0, 1, 2, 8])
    kept = kept_units(model.config, imp, PruneTarget(num_attention_heads=2))
    assert kept.heads[0].tolist() == [1, 2] and kept.heads[1].tolist() == [0, 3]
    pruned = prune_dense(model, imp, PruneTarget(num_attention_heads=2))
    q_old, q_new = model.model.layers[0].self_attn.q_proj.weight, pruned.model.layers[0].self_attn.q_proj.weight
    torch.testing.assert_close(q_new, q_old[16:48], rtol=0, atol=0)


def test_what_the_dense_path_cannot_do_is_refused_naming_step_field_and_architecture(models):
    c = models["llama"].config

    def refused(config, match):
        with pytest.raises(SpecError, match=match):
            check_dense(config, c, "LlamaForCausalLM", "prune")

    refused(Config(target=PruneTarget(mamba_num_heads=4)),
            r"^step prune: target\.mamba_num_heads: LlamaForCausalLM has no Mamba layers; leave it unset$")
    refused(Config(target=PruneTarget(mamba_head_dim=8)), r"^step prune: target\.mamba_head_dim: LlamaForCausalLM")
    refused(Config(budget=Budget(max_params=10**5), search=SearchSpace(mamba_head_fractions=[0.5])),
            r"^step prune: search\.mamba_head_fractions: LlamaForCausalLM has no Mamba layers; leave it unset$")
    check_dense(Config(budget=Budget(max_params=10**5)), c, "LlamaForCausalLM", "prune")  # the default fractions: unused
    refused(Config(target=PruneTarget(num_attention_heads=3)),
            r"^step prune: target\.num_attention_heads: 3 must be a multiple of the LlamaForCausalLM's 2 KV heads")
    refused(Config(target=PruneTarget(hidden_size=80)), r"^step prune: target\.hidden_size: 80 exceeds the LlamaForCausalLM's 64")
    refused(Config(target=PruneTarget(drop_layers=2)), r"^step prune: target\.drop_layers: 2 would leave no layer")
    # 2 heads of 16 = 32 is not a multiple of 64; 4 heads of 16 is
    refused(Config(target=PruneTarget(num_attention_heads=2), width_multiple_of=64),
            r"^step prune: target\.num_attention_heads: 2 heads of 16 make an attention width of 32 in the LlamaForCausalLM, "
            r"not a multiple of width_multiple_of = 64$")
    check_dense(Config(target=PruneTarget(num_attention_heads=4, hidden_size=48), width_multiple_of=16), c, "LlamaForCausalLM", "prune")


def _imported(root, arch: str):
    folder = model_folder_of(arch, root / "model")
    return publish(root, "import_model", "checkpoint", name=arch), folder


def test_compress_stage_prunes_an_imported_llama(tmp_path, tokens):
    from factory.stages.compress import stage

    model, folder = _imported(tmp_path / "in", "llama")
    out = tmp_path / "out"
    out.mkdir()
    metrics = stage.run(Config(target=TARGET, calibration_samples=8, seq_len=32),
                        {"model": model, "tokens": tokens}, out, StepContext("compress"))
    report = json.loads((out / "compress.json").read_text())
    assert report["teacher"]["architecture"] == report["student"]["architecture"] == "LlamaForCausalLM"
    assert (report["student"]["hidden_size"], report["student"]["num_hidden_layers"]) == (48, 1)
    assert len(report["layer_scores"]["loss_increase"]) == 2
    student = load_model(out / "model")
    assert metrics["params_after"] == sum(p.numel() for p in student.parameters()) < metrics["params_before"]
    assert metrics["layers_after"] == 1.0
    assert (out / "model" / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()


def test_budget_search_on_a_mistral_sizes_candidates_exactly_and_keeps_one_within_budget(tmp_path, tokens):
    """Candidates are the products of residual and MLP fractions and layers dropped; their parameter counts are the
    pruned models' own, their memory the weights (bf16) and the KV cache of every remaining layer."""
    from factory.stages.compress import stage

    model, folder = _imported(tmp_path / "in", "mistral")
    teacher = load_model(folder)
    full = sum(p.numel() for p in teacher.parameters())
    out = tmp_path / "out"
    out.mkdir()
    space = SearchSpace(hidden_fractions=[1.0, 0.75], mlp_fractions=[0.5], drop_layers=[0, 1], max_candidates=2)
    budget = Budget(max_params=full - 1, context_len=256)
    metrics = stage.run(Config(budget=budget, search=space, calibration_samples=8, seq_len=32, candidate_steps=2),
                        {"model": model, "tokens": tokens}, out, StepContext("compress"))
    cands = json.loads((out / "compress.json").read_text())["candidates"]
    assert len(cands) == 2 and cands[0]["params"] >= cands[1]["params"] and all(c["params"] < full for c in cands)
    for cand in cands:
        layers = cand["num_hidden_layers"]
        assert cand["memory_bytes"] == {"weights": 2 * cand["params"], "kv_cache": layers * 2 * 2 * 16 * 256 * 2,
                                        "mamba_conv": 0, "mamba_ssm": 0}
    student = load_model(out / "model")
    assert metrics["params_after"] == sum(p.numel() for p in student.parameters()) < full
    assert metrics["params_after"] == min(cands, key=lambda c: c["valid_loss_distilled"])["params"]


def test_compress_stage_refuses_mamba_sizes_for_a_qwen3_before_any_work(tmp_path, tokens):
    from factory.stages.compress import stage

    model, _ = _imported(tmp_path / "in", "qwen3")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SpecError, match=r"^step shrink: target\.mamba_num_heads: Qwen3ForCausalLM has no Mamba layers"):
        stage.run(Config(target=PruneTarget(mamba_num_heads=2), calibration_samples=8, seq_len=32),
                  {"model": model, "tokens": tokens}, out, StepContext("shrink"))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("arch", DENSE)
def test_the_registry_takes_every_dense_architecture_when_the_spec_is_planned(arch, tmp_path):
    from factory.kinds import KINDS
    from factory.plan import plan_spec
    from factory.spec import parse_spec
    from factory.steps import check_architectures

    folder = model_folder_of(arch, tmp_path / arch)
    spec = parse_spec({"name": "prune", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
                       "stages": {"import_model": {"source": str(folder)}, "curate": {"sources": [str(tmp_path)]},
                                  "tokenize": {}, "compress": {"target": {"hidden_size": 48}}, "distill": {}}})
    assert spec.inputs_of("compress")["model"] == "import_model"
    made = check_architectures(spec)
    assert made["compress"] == made["distill"] == made["import_model"] in KINDS["compress"].architectures
    # `factory plan` costs the imported model's own shape (factory.cost reads dense decoders' configs), not the
    # spec's NemotronH: the teacher's parameters are the folder's, the student's the pruned shape's
    from factory.cost.param_count import parameter_counts
    from factory.cost.shape import as_shape
    from transformers import AutoConfig

    steps = {s.step: s for s in plan_spec(spec).steps}
    assert steps["import_model"].model is not None
    config = AutoConfig.from_pretrained(folder)
    assert steps["import_model"].data["parameters"] == parameter_counts(config).total
    student = steps["compress"].model.config
    assert student.hidden == 48 and student.pattern == as_shape(config).pattern
    assert steps["distill"].data and not steps["distill"].note.startswith("not costed")


def test_mamba_settings_for_a_dense_model_are_refused_when_the_spec_is_planned(tmp_path):
    """Before any step runs (pretrain would train first in import -> pretrain -> compress), naming the step, the
    field, the architecture and where it came from."""
    from factory.spec import parse_spec
    from factory.steps import check_architectures

    folder = model_folder_of("qwen3", tmp_path / "qwen3")
    spec = parse_spec({"name": "prune", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
                       "stages": {"import_model": {"source": str(folder)}, "curate": {"sources": [str(tmp_path)]},
                                  "tokenize": {}, "compress": {"target": {"mamba_num_heads": 2}}, "distill": {}}})
    with pytest.raises(SpecError, match=r"^step compress \(the model of step import_model is a Qwen3ForCausalLM\): "
                                        r"target\.mamba_num_heads: Qwen3ForCausalLM has no Mamba layers"):
        check_architectures(spec)

def test_compress_then_distill_a_llama(tmp_path, tokens):
    """The Minitron chain on an imported Llama: the model trained a little on the grammar tokens (so there is something
    to lose and to recover), pruned by the compress stage, then distilled from it by the distill stage: the student
    stays a LlamaForCausalLM of the pruned shape and distillation recovers validation loss the pruning cost."""
    from factory.artifacts import Tokens
    from factory.model.checkpoints import save_model
    from factory.stages.compress import stage as compress
    from factory.stages.distill import stage as distill
    from factory.train.config import TrainConfig
    from factory.train.objectives.causal_lm import CausalLMObjective
    from factory.train.trainer import Trainer

    folder = model_folder_of("llama", tmp_path / "random" / "model")
    model = load_model(folder).train()
    torch.manual_seed(0)
    windows = list(Tokens.of({"tokens": tokens}, "tokens").windows("train", 32))
    Trainer(CausalLMObjective(model), windows, TrainConfig(steps=60, seq_len=32, micro_batch_size=8, lr=3e-3, warmup_steps=3,
                                                           checkpoint_interval=0)).fit()
    save_model(model.eval(), tmp_path / "teacher" / "model", tokenizer_from=folder)
    teacher = publish(tmp_path / "teacher", "import_model", "checkpoint")

    target = PruneTarget(hidden_size=48, intermediate_size=64, num_attention_heads=2)
    (tmp_path / "pruned").mkdir()
    compress.run(Config(target=target, calibration_samples=16, seq_len=32), {"model": teacher, "tokens": tokens},
                 tmp_path / "pruned", StepContext("compress"))
    student = publish(tmp_path / "pruned", "compress", "checkpoint")
    cfg = distill.Config(steps=30, seq_len=32, micro_batch_size=8, lr=3e-3, warmup_steps=3, checkpoint_interval=0,
                         valid_samples=16)
    result = distill.run(cfg, {"student": student, "teacher": teacher, "tokens": tokens}, tmp_path / "distilled",
                         StepContext("distill"))
    distilled = load_model(tmp_path / "distilled" / "model")
    assert type(distilled).__name__ == "LlamaForCausalLM"
    assert (distilled.config.hidden_size, distilled.config.num_attention_heads, distilled.config.head_dim) == (48, 2, 16)
    assert result["teacher_valid_loss"] < result["valid_loss_before"]  # pruning cost loss
    assert result["valid_loss_after"] < result["valid_loss_before"]  # distillation won some back
