"""Release a checkpoint as a Hugging Face model folder, with a model card written from its lineage.

    from factory.release import Config, run
    run(Config(model_name="tiny-nemotron-h"), {"model": ckpt, "tokens": tokens, "evaluation": ev}, out, ctx)

Inputs: "model" (pretrain artifact, `model/` holds safetensors + config.json), "tokens" (tokenize artifact,
`tokenizer/`), "evaluation" (evaluate artifact, `eval.json`). Output: one folder that stock transformers
loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`: weights as
safetensors, config.json, tokenizer files, generation_config.json, README.md (YAML front matter with
datasets, base_model, metrics as `model-index`; the body lists every ancestor artifact). With `push` and an
`HF_TOKEN` in the environment, the folder is uploaded with `huggingface_hub`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from factory.errors import InputError
from factory.evaluate import format_metric, task_table
from factory.stage import Artifact, StageConfig, StepContext, no_effect

KIND = "release"

# Files of a save_pretrained model folder that belong in the release (generation_config.json is rewritten).
_MODEL_FILES = ("*.safetensors", "model.safetensors.index.json")


class Config(StageConfig):
    """What the released folder and its model card say; whether to push it to the Hub."""

    model_name: str = Field("nemotron-factory-model", min_length=1, description="Model name used as the card's title and in model-index.")
    license: str = Field("apache-2.0", description="License identifier for the card's front matter (Hub license ids).")
    language: list[str] = Field(default_factory=lambda: ["en"], description="ISO 639-1 codes of the training text's languages.")
    tags: list[str] = Field(default_factory=lambda: ["nemotron-h", "hybrid-mamba", "model-factory"], description="Extra Hub tags.")
    description: str = Field("", description="A paragraph placed under the card's title.")
    temperature: float = Field(0.7, gt=0, description="Default sampling temperature written to generation_config.json.")
    top_p: float = Field(0.95, gt=0, le=1, description="Default nucleus sampling mass written to generation_config.json.")
    max_new_tokens: int = Field(256, ge=1, description="Default generation length written to generation_config.json.")
    push: bool = no_effect(False, "Upload the folder to the Hugging Face Hub (needs HF_TOKEN in the environment).")
    repo_id: str | None = no_effect(None, "Hub repository ('owner/name') to push to; required when push is true.")
    private: bool = no_effect(True, "Create the Hub repository as private when it does not exist.")

    @model_validator(mode="after")
    def _push_needs_repo(self) -> Config:
        if self.push and not self.repo_id:
            raise ValueError("repo_id: required when push is true (e.g. 'my-org/my-model')")
        return self


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Write the Hugging Face folder into `output`; push it when asked and possible."""
    model_art, tokens_art, eval_art = (_require(inputs, n) for n in ("model", "tokens", "evaluation"))

    n_bytes = copy_weights(model_art.path / "model", output)
    tokenizer = copy_tokenizer(tokens_art.path / "tokenizer", output)
    model_config = write_model_config(model_art.path / "model", output, tokenizer)
    write_generation_config(output, tokenizer, config)

    eval_path = eval_art.path / "eval.json"
    if not eval_path.is_file():
        raise InputError(f"{eval_path}: the evaluation artifact has no eval.json")
    evaluation = json.loads(eval_path.read_text())
    card = model_card(config, model_art, tokens_art, eval_art, evaluation, model_config)
    (output / "README.md").write_text(card)
    ctx.log_artifact(output / "README.md")
    ctx.log.info("release_written", files=sorted(p.name for p in output.iterdir()), weight_bytes=n_bytes)

    pushed = push_to_hub(output, config, ctx)
    return {"weight_bytes": float(n_bytes), "pushed": float(pushed)}


def copy_weights(model_dir: Path, output: Path) -> int:
    """Copy the safetensors weights (and shard index); return their total size in bytes."""
    files = sorted({p for pattern in _MODEL_FILES for p in model_dir.glob(pattern)})
    if not any(p.suffix == ".safetensors" for p in files):
        raise InputError(f"{model_dir}: no *.safetensors weights; the model artifact must be a save_pretrained folder")
    for p in files:
        shutil.copy2(p, output / p.name)
    return sum(p.stat().st_size for p in files if p.suffix == ".safetensors")


def copy_tokenizer(tokenizer_dir: Path, output: Path) -> Any:
    """Copy the tokenizer files to the folder's root (where AutoTokenizer looks); return the loaded tokenizer."""
    from transformers import AutoTokenizer

    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise InputError(f"{tokenizer_dir}: no tokenizer.json; the tokens artifact must hold a save_pretrained tokenizer/")
    for p in tokenizer_dir.iterdir():
        if p.is_file():
            shutil.copy2(p, output / p.name)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer.eos_token_id is None:
        raise InputError(f"{tokenizer_dir}: the tokenizer has no eos token; generation could never stop")
    return tokenizer


def write_model_config(model_dir: Path, output: Path, tokenizer: Any) -> dict[str, Any]:
    """config.json with the special-token ids taken from the tokenizer that ships beside it."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: missing; the model artifact must be a save_pretrained folder")
    cfg = json.loads(path.read_text())
    if len(tokenizer) > cfg.get("vocab_size", len(tokenizer)):
        raise InputError(
            f"{path}: vocab_size {cfg['vocab_size']} is smaller than the tokenizer's {len(tokenizer)} tokens; "
            "the model and tokens inputs do not belong together"
        )
    cfg.update(_special_ids(tokenizer))
    (output / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return cfg


def write_generation_config(output: Path, tokenizer: Any, config: Config) -> None:
    """generation_config.json: the tokenizer's special ids and the configured sampling defaults."""
    from transformers import GenerationConfig

    GenerationConfig(
        **_special_ids(tokenizer),
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
    ).save_pretrained(output)


def model_card(
    config: Config,
    model_art: Artifact,
    tokens_art: Artifact,
    eval_art: Artifact,
    evaluation: Mapping[str, Any],
    model_config: Mapping[str, Any],
) -> str:
    """README.md: YAML front matter (Hub metadata) and a body that describes the lineage."""
    chain = lineage_chain([eval_art, model_art, tokens_art])
    corpora = [a for a in chain if a["kind"] == "corpus"]
    sources = sorted({s["uri"] for a in chain for s in a.get("sources") or [] if s.get("uri")})
    # The nearest checkpoint strictly above the released one is its base model (none when trained from scratch).
    model_fp = model_art.manifest.get("fingerprint")
    bases = [a for a in lineage_chain([model_art]) if a["kind"] == "checkpoint" and a["fingerprint"] != model_fp]
    metrics = {k: float(v) for k, v in (evaluation.get("metrics") or {}).items()}
    tasks = evaluation.get("tasks") or {}  # benchmark sets: {name: {items, accuracy, target_logprob, ...}}

    meta: dict[str, Any] = {
        "language": list(config.language),
        "license": config.license,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": list(config.tags),
        "datasets": [a["uri"] for a in corpora] + sources,
    }
    if bases:
        meta["base_model"] = bases[0]["uri"]
    if metrics:
        meta["model-index"] = [
            {
                "name": config.model_name,
                "results": [
                    {
                        "task": {"type": "text-generation", "name": "Language modeling"},
                        "dataset": {"type": tokens_art.uri, "name": "held-out validation split", "split": "valid"},
                        "metrics": [
                            {"type": _metric_type(k), "name": k, "value": v}
                            for k, v in metrics.items()
                            if k != "valid_tokens"
                        ],
                    },
                    *[
                        {
                            "task": {"type": "text-generation", "name": "Last-word cloze"},
                            "dataset": {"type": name, "name": name},
                            "metrics": [{"type": "accuracy", "name": "accuracy", "value": float(t["accuracy"])},
                                        {"type": "target_logprob", "name": "target_logprob", "value": float(t["target_logprob"])}],
                        }
                        for name, t in tasks.items()
                    ],
                ],
            }
        ]

    pattern = "".join({"linear_attention": "M", "full_attention": "*", "mlp": "-", "moe": "E"}.get(t, "?") for t in model_config.get("layers_block_type") or [])
    body = [f"# {config.model_name}", ""]
    if config.description:
        body += [config.description, ""]
    body += [
        f"A `{model_config.get('architectures', ['?'])[0]}` model "
        f"(hidden size {model_config.get('hidden_size')}, layer pattern `{pattern or '?'}`: "
        "M = Mamba-2, * = attention, - = MLP, E = MoE), trained by the model factory "
        + (f"starting from `{bases[0]['uri']}`." if bases else "from scratch."),
        "",
        "## Evaluation",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {format_metric(v)} |" for k, v in metrics.items()],
        "",
        *([*task_table(tasks), ""] if tasks else []),
        "## Training data",
        "",
        *[f"- corpus `{a['uri']}` (fingerprint `{a['fingerprint']}`)" for a in corpora],
        *[f"- raw source `{s}`" for s in sources],
        "",
        "## Lineage",
        "",
        "Every artifact this release was built from, nearest first:",
        "",
        "| stage | kind | fingerprint | MLflow run | uri |",
        "|---|---|---|---|---|",
        *[
            f"| {a['stage']} | {a['kind']} | `{a['fingerprint'][:16]}` | {a.get('mlflow_run_id') or '-'} | `{a['uri']}` |"
            for a in chain
        ],
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tokenizer = AutoTokenizer.from_pretrained("{config.repo_id or "PATH_TO_THIS_FOLDER"}")',
        f'model = AutoModelForCausalLM.from_pretrained("{config.repo_id or "PATH_TO_THIS_FOLDER"}")',
        'ids = tokenizer("The history of the city", return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=32)[0]))",
        "```",
        "",
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body)


def lineage_chain(artifacts: list[Artifact]) -> list[dict[str, Any]]:
    """Each artifact and all its ancestors (from the manifests' `lineage`), nearest first, once each."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(entry: Mapping[str, Any]) -> None:
        fp = entry.get("fingerprint")
        if fp and fp not in seen:
            seen.add(fp)
            chain.append(entry)

    for art in artifacts:
        m = art.manifest
        add(
            {
                "stage": m.get("stage", "?"),
                "kind": m.get("kind", "?"),
                "fingerprint": m.get("fingerprint", ""),
                "uri": m.get("uri", str(art.path)),
                "sources": m.get("sources") or [],
                "mlflow_run_id": (m.get("producer") or {}).get("mlflow_run_id"),
            }
        )
    for art in artifacts:
        for entry in art.manifest.get("lineage") or []:
            add({"stage": "?", "kind": "?", "uri": "?", **entry})
    return chain


def push_to_hub(folder: Path, config: Config, ctx: StepContext) -> bool:
    """Upload `folder` to `config.repo_id` when `push` is set and HF_TOKEN is present; else log why not."""
    if not config.push:
        ctx.log.info("push_skipped", reason="push is false")
        return False
    token = os.environ.get("HF_TOKEN")
    if not token:
        ctx.log.warning("push_skipped", reason="HF_TOKEN is not set", repo_id=config.repo_id)
        return False
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(config.repo_id, repo_type="model", private=config.private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=config.repo_id, repo_type="model", commit_message=f"Release {config.model_name}")
    ctx.log.info("pushed", repo_id=config.repo_id, commit=getattr(info, "oid", None))
    return True


def _special_ids(tokenizer: Any) -> dict[str, int | None]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad}


def _metric_type(name: str) -> str:
    return name.removeprefix("valid_")


def _require(inputs: Mapping[str, Artifact], name: str) -> Artifact:
    if name not in inputs:
        raise InputError(f"release needs an input named {name!r}; got {sorted(inputs)}")
    return inputs[name]
