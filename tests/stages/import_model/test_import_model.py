"""import_model: a model that exists (Llama, Qwen2/3, Mistral, NemotronH dense and MoE), from a local folder, the local
Hugging Face cache or S3, in as a checkpoint; bad folders refused when the spec is planned, with one line naming the
step; nothing downloaded, no weight loaded to check it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import boto3
import pytest
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.chat.template import CHAT_TEMPLATE
from factory.errors import InputError, SpecError, UserError
from factory.kinds import KINDS
from factory.spec import parse_spec
from factory.stage import StepContext
from factory.stages import import_model
from factory.steps import Executor, check_architectures
from tests.builders.architectures import ARCHITECTURES, hub_cache, model_folder_of


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {arch: model_folder_of(arch, root / arch) for arch in ARCHITECTURES}


def _import(source: str, out: Path, **config) -> dict:
    cfg = import_model.Config(source=source, **config)
    import_model.config.check_source(cfg, "import_model")
    metrics = import_model.run(cfg, {}, out, StepContext("import_model"))
    return {"metrics": metrics, "record": json.loads((out / "import.json").read_text())}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_imports_as_it_is(sources, arch, tmp_path):
    got = _import(str(sources[arch]), tmp_path / "out")
    record, model_dir = got["record"], tmp_path / "out" / "model"
    assert record["architecture"] == AutoModelForCausalLM.from_pretrained(sources[arch]).__class__.__name__
    assert record["chat_template"] == "kept" and record["added_tokens"] == 0
    assert got["metrics"]["params"] == record["params"] > 100_000
    # the folder's files, byte for byte: nothing was loaded and saved again
    for path in sources[arch].iterdir():
        assert (model_dir / path.name).read_bytes() == path.read_bytes(), path.name
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert sum(p.numel() for p in model.parameters()) <= record["params"]


def test_the_factory_template_adds_its_tokens_and_grows_the_embeddings_only_when_it_must(sources, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(sources["llama"], plain)
    tok = AutoTokenizer.from_pretrained(plain)
    tok.chat_template = None
    tok.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    # the builder's tokenizer holds the chat markers already: the template is set, no token added, weights untouched
    got = _import(str(plain), tmp_path / "a", chat_template="factory")
    assert got["record"]["added_tokens"] == 0 and got["record"]["chat_template"] == "factory"
    assert AutoTokenizer.from_pretrained(tmp_path / "a" / "model").chat_template == CHAT_TEMPLATE
    assert (tmp_path / "a/model/model.safetensors").read_bytes() == (plain / "model.safetensors").read_bytes()


def test_a_hub_reference_resolves_in_the_local_cache_and_names_its_commit(sources, tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    commit = hub_cache(cache, "acme/tiny-qwen3", sources["qwen3"])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = _import("hf://acme/tiny-qwen3@main", tmp_path / "out")
    assert got["record"]["hub_id"] == "acme/tiny-qwen3" and got["record"]["revision"] == commit
    assert (tmp_path / "out/model/model.safetensors").read_bytes() == (sources["qwen3"] / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match=r"revision 'v2' of acme/tiny-qwen3 is not in the Hugging Face cache"):
        import_model.config.check_source(import_model.Config(source="hf://acme/tiny-qwen3@v2"), "import_model")
    with pytest.raises(InputError, match=r"acme/absent is not in the Hugging Face cache on this machine.*never downloads"):
        import_model.config.check_source(import_model.Config(source="hf://acme/absent"), "import_model")


def test_an_s3_prefix_is_checked_from_its_headers_and_imported(sources, s3_endpoint, s3_bucket, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for path in sources["mistral"].iterdir():
        client.upload_file(str(path), s3_bucket, f"models/mistral/{path.name}")
    uri = f"s3://{s3_bucket}/models/mistral"
    config = import_model.Config(source=uri)
    storage = type("Storage", (), {"endpoint_url": s3_endpoint, "region": "us-east-1"})()
    import_model.config.check_source(config, "import_model", storage)  # the small files and the shards' headers only
    ctx = StepContext("import_model", scratch=tmp_path / "scratch", s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    import_model.run(config, {}, tmp_path / "out", ctx)
    assert (tmp_path / "out/model/model.safetensors").read_bytes() == (sources["mistral"] / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "out/import.json").read_text())["architecture"] == "MistralForCausalLM"


def _broken(sources, tmp_path, how: str) -> Path:
    folder = tmp_path / how
    shutil.copytree(sources["llama"], folder)
    weights = load_file(folder / "model.safetensors")
    if how == "no_weights":
        (folder / "model.safetensors").unlink()
    elif how == "shards_disagree":  # two shards and an index that places a tensor in the wrong one
        names = sorted(weights)
        save_file({n: weights[n] for n in names[:5]}, folder / "model-00001-of-00002.safetensors")
        save_file({n: weights[n] for n in names[5:]}, folder / "model-00002-of-00002.safetensors")
        (folder / "model.safetensors").unlink()
        weight_map = {n: "model-00001-of-00002.safetensors" for n in names}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    elif how == "tokenizer_too_big":
        tok = AutoTokenizer.from_pretrained(folder)
        tok.add_tokens([f"extra{i}" for i in range(40)])
        tok.save_pretrained(folder)
    elif how == "unknown_architecture":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "nonexistent_arch",
                                                        "architectures": ["NonexistentForCausalLM"]}))
    elif how == "weights_of_another_shape":
        weights["lm_head.weight"] = weights["lm_head.weight"][:, :32].contiguous()
        save_file(weights, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize("how,message", [
    ("no_weights", r"no weights in safetensors form"),
    ("shards_disagree", r"the shards disagree with the index"),
    ("tokenizer_too_big", r"the tokenizer has 473 tokens, more than the embedding's 433 rows"),
    ("unknown_architecture", r"does not load without remote code"),
    ("weights_of_another_shape", r"tensor lm_head.weight is \[433, 32\] in the shards, \[433, 64\] by config.json"),
])
def test_a_bad_folder_is_one_line_naming_the_step_before_anything_runs(sources, tmp_path, how, message):
    folder = _broken(sources, tmp_path, how)
    spec = parse_spec({"name": "imp", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
                       "steps": {"base": {"kind": "import_model", "config": {"source": str(folder)}}}})
    with pytest.raises(InputError, match=rf"^base: .*{message}"):
        Executor(spec).plan()  # what run, plan and explain do first


def test_a_kind_that_does_not_take_an_architecture_says_so_when_the_spec_is_planned(sources, tmp_path, monkeypatch):
    # every kind now takes every architecture the builders make: the check is proven on compress as it was registered
    # before it pruned dense models (NemotronH only)
    monkeypatch.setitem(KINDS, "compress", dataclasses.replace(KINDS["compress"], architectures=("NemotronHForCausalLM",)))
    spec = parse_spec({"name": "imp", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
                       "steps": {"base": {"kind": "import_model", "config": {"source": str(sources["qwen2"])}},
                                 "tokenize": {"kind": "tokenize", "config": {}, "inputs": {"corpus": "corpus", "model": "base"}},
                                 "corpus": {"kind": "curate", "config": {"sources": [str(tmp_path)]}},
                                 "compress": {"kind": "compress", "config": {"budget": {"max_params": 1000}}, "inputs": {"model": "base", "tokens": "tokenize"}}}})
    with pytest.raises(UserError, match=r"step compress: kind compress takes NemotronHForCausalLM, not Qwen2ForCausalLM "
                                        r"\(the model of step base\)"):
        Executor(spec).plan()


def test_continued_pretraining_keeps_the_init_models_architecture_and_refuses_a_model_of_its_own(sources, tmp_path):
    base = {"name": "cpt", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
            "model": {"preset": "tiny"}}
    stages = {"import_model": {"source": str(sources["llama"])}, "curate": {"sources": [str(tmp_path)]},
              "tokenize": {}, "pretrain": {"steps": 40}}
    spec = parse_spec({**base, "stages": stages})  # the top-level model is not poured into a pretrain that continues one
    assert spec.inputs_of("pretrain") == {"tokens": "tokenize", "init": "import_model"}
    assert spec.inputs_of("tokenize")["model"] == "import_model"  # tokens in the imported model's own tokenizer
    assert check_architectures(spec)["pretrain"] == "LlamaForCausalLM"
    with pytest.raises(SpecError, match=r"stages\.pretrain\.model: this step continues the model of step import_model"):
        parse_spec({**base, "stages": {**stages, "pretrain": {"steps": 40, "model": {"preset": "small_20m"}}}})


def _release_of(source: str, tmp_path: Path):
    """import -> evaluate -> release (the recipe's wiring), the folder `source` imported as step `base`."""
    return parse_spec({"name": "plan", "work_dir": str(tmp_path / "work"), "storage": {"root": str(tmp_path / "store")},
                       "steps": {"base": {"kind": "import_model", "config": {"source": source}},
                                 "curate": {"kind": "curate", "config": {"sources": [str(tmp_path)]}},
                                 "tokenize": {"kind": "tokenize", "config": {}, "inputs": {"corpus": "curate", "model": "base"}},
                                 "evaluate": {"kind": "evaluate", "config": {}, "inputs": {"model": "base", "tokens": "tokenize"}},
                                 "release": {"kind": "release", "config": {},
                                             "inputs": {"model": "base", "tokens": "tokenize", "evaluation": "evaluate"}}}})


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_factory_plan_costs_later_steps_with_the_imported_models_own_shape(sources, arch, tmp_path):
    """Not the spec's own model: the plan's parameter count for the step after the import is the folder's."""
    from factory.plan import plan_spec

    spec = _release_of(str(sources[arch]), tmp_path)
    steps = {s.step: s for s in plan_spec(spec).steps}
    stored = steps["base"].data["parameters"]
    assert steps["base"].model is not None and not steps["release"].note.startswith("not costed")
    # BF16 weights of the folder's parameters (the MoE's stored router-bias buffers, one per expert, are not counted)
    assert steps["release"].data["weights_bytes"] == pytest.approx(2 * stored, rel=1e-3)


def test_an_architecture_factory_cost_cannot_shape_leaves_later_steps_uncosted(tmp_path):
    """Gemma imports (any causal LM does), but factory.cost has no formulas for it: the plan says so rather than
    cost the spec's NemotronH in its place."""
    from transformers import GemmaConfig, GemmaForCausalLM

    from factory.plan import plan_spec
    from tests.builders.architectures import chat_tokenizer

    folder = tmp_path / "gemma"
    GemmaForCausalLM(GemmaConfig(vocab_size=len(chat_tokenizer()), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=16)).save_pretrained(folder)
    chat_tokenizer().save_pretrained(folder)
    spec = _release_of(str(folder), tmp_path)
    steps = {s.step: s for s in plan_spec(spec).steps}
    assert "no formulas for gemma" in steps["base"].note
    assert steps["release"].note.startswith("not costed: step base plans no model shape") and not steps["release"].data
