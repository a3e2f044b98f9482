"""Every kind that takes a model works on the architectures users bring: pretrain (continued, from an `init`), sft, rl,
reward_model, preference, distill, evaluate and release each run end to end on an imported Llama, Qwen2, Qwen3, Mistral and NemotronH (dense and MoE),
with the model's own chat template kept (a ChatML without generation markers, as published templates are), and give
a model stock transformers loads as the same architecture. Tokens are written with the imported model's tokenizer."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from factory.errors import InputError
from factory.kinds import KINDS
from factory.stage import Artifact, StepContext
from tests.builders import additions, conversations, corpus
from tests.builders.architectures import ARCHITECTURES, model_folder_of
from tests.builders.manifests import stage_output
from tests.builders.text import random_sentences
from tests.train.trainer_kinds import BASE

KINDS_ON_MODELS = ("pretrain", "sft", "rl", "reward_model", "preference", "distill", "evaluate", "release")
SCORED = BASE["reward_model"]["data"]


def _run(kind: str, config: dict, inputs: dict, out) -> Artifact:
    return stage_output(kind, KINDS[kind].config(**config), inputs, out)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Per architecture: the imported model, a second one of other weights, tokens written with its tokenizer."""
    root = tmp_path_factory.mktemp("archs")
    data = conversations(root / "conversations", additions(12))
    texts = corpus(root / "corpus", [{"id": f"d{i}", "text": t} for i, t in enumerate(random_sentences(120, seed=3))])
    out = {}
    for arch in ARCHITECTURES:
        models = [_run("import_model", {"source": str(model_folder_of(arch, root / f"{arch}-src{seed}", seed=seed))}, {},
                       root / f"{arch}-{seed}") for seed in (0, 1)]
        tokens = _run("tokenize", {"valid_fraction": 0.2}, {"corpus": texts, "model": models[0]}, root / f"{arch}-tokens")
        out[arch] = {"model": models[0], "teacher": models[1], "tokens": tokens, "data": data, "root": root / arch}
    return out


def _config(kind: str) -> dict:
    if kind in BASE:
        return {**BASE[kind], "steps": 2, **({"judge": "reward_model"} if kind == "preference" else {})}
    if kind == "evaluate":
        return {"seq_len": 32, "max_batches": 2, "max_new_tokens": 4, "prompts": ["What is"]}
    return {"model_name": "imported-tiny"}


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", KINDS_ON_MODELS)
def test_every_kind_runs_on_every_architecture(imported, arch, kind, tmp_path):
    got = imported[arch]
    wiring = {"pretrain": {"tokens": got["tokens"], "init": got["model"]},  # continued pretraining
              "sft": {"model": got["model"], "data": got["data"]}, "rl": {"model": got["model"], "data": got["data"]},
              "reward_model": {"model": got["model"]}, "distill": {"student": got["model"], "teacher": got["teacher"],
                                                                   "tokens": got["tokens"]},
              "evaluate": {"model": got["model"], "tokens": got["tokens"]}}
    if kind == "preference":
        rm = _run("reward_model", {**BASE["reward_model"], "steps": 2}, {"model": got["model"]}, tmp_path / "rm")
        wiring["preference"] = {"model": got["model"], "data": got["data"], "reward_model": rm}
    if kind == "release":
        evaluation = _run("evaluate", _config("evaluate"), {"model": got["model"], "tokens": got["tokens"]}, tmp_path / "ev")
        wiring["release"] = {"model": got["model"], "tokens": got["tokens"], "evaluation": evaluation}
    out = tmp_path / "out"
    out.mkdir()  # the staging folder the executor makes
    metrics = KINDS[kind].run(KINDS[kind].config(**_config(kind)), wiring[kind], out, StepContext(kind))
    architecture = AutoConfig.from_pretrained(got["model"].path / "model").architectures[0]
    if kind == "evaluate":
        assert metrics["valid_tokens"] > 0 and json.loads((out / "eval.json").read_text())["metrics"]
        return
    folder = out if kind == "release" else out / "model"
    model = AutoModelForCausalLM.from_pretrained(folder)  # stock transformers, the architecture it came in as
    assert type(model).__name__ == architecture
    if kind in BASE:
        assert metrics["steps"] == 2


def test_a_release_of_a_tuned_import_names_its_base_as_the_hub_does(imported, tmp_path):
    got = imported["qwen3"]
    base = _run("import_model", {"source": str(got["model"].path / "model"), "hub_id": "acme/tiny-qwen3",
                                 "license": "apache-2.0"}, {}, tmp_path / "base")
    tuned = _run("sft", {**BASE["sft"], "steps": 2}, {"model": base, "data": got["data"]}, tmp_path / "sft")
    evaluation = _run("evaluate", _config("evaluate"), {"model": tuned, "tokens": got["tokens"]}, tmp_path / "ev")
    _run("release", {"model_name": "tiny-qwen3-tuned"}, {"model": tuned, "tokens": got["tokens"], "evaluation": evaluation},
         tmp_path / "release")
    card = (tmp_path / "release" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "acme/tiny-qwen3" and meta["base_model_relation"] == "finetune"
    assert meta["license"] == "apache-2.0"  # the base's, the release config naming none
    assert "starting from the imported model `acme/tiny-qwen3`" in card


def test_continued_pretraining_refuses_tokens_of_another_tokenizer(imported, tmp_path):
    tokens = imported["llama"]["tokens"]
    shutil.copytree(tokens.path, tmp_path / "tokens")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tokens" / "tokenizer")
    tok.add_tokens(["<an extra token>"])  # not the model's tokenizer any more
    tok.save_pretrained(tmp_path / "tokens" / "tokenizer")
    with pytest.raises(InputError, match="written with another tokenizer than this model's"):
        KINDS["pretrain"].run(KINDS["pretrain"].config(**_config("pretrain")),
                              {"tokens": Artifact(tmp_path / "tokens", tokens.manifest), "init": imported["qwen2"]["model"]},
                              tmp_path / "out", StepContext("pretrain"))
