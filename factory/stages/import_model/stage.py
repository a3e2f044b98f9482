"""The import_model stage: an existing Hugging Face causal LM in as a checkpoint artifact (Llama-Nemotron, AceReason and
Minitron start from models that exist).

Input: none; the config's `source` (a local folder, an s3:// prefix, or hf://ORG/NAME@REVISION from the local Hugging
Face cache). Output (a checkpoint artifact, so every later kind takes it as its "model", "student", "teacher" or
pretrain's "init"):

    model/        the source's files as they are (config, safetensors shards and index, tokenizer, generation config,
                  its README and license), copied in chunks: the weights are never loaded, so memory stays flat however
                  large the model; with `chat_template: factory`, the tokenizer carries the factory's chat template
                  and its special tokens (the one path that loads the weights: to grow the embeddings when tokens
                  were added)
    import.json   where it came from (source, Hub id, revision's commit, the source's digest) and what it is
                  (architecture, parameters, dtype, vocabulary, license, chat template kept or replaced)

The folder is checked when the spec is planned (the registry's `preflight` hook: `config.check_source`), so a bad
source fails `factory run`, `plan` and `explain` with one line before any step trains. The source's identity in the
fingerprint is its listing plus its safetensors headers (`factory.sources`); `content_hash: [SOURCE]` hashes every
byte instead. The run's MLflow inputs name the base model with its source, revision and digest.

    from factory.stages import import_model
    import_model.run(import_model.Config(source="hf://Qwen/Qwen3-0.6B@main"), {}, out, StepContext("import_model"))
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.chat.template import CHAT_TOKENS, with_chat_template
from factory.errors import InputError
from factory.sources import fetch_input, input_identity, is_remote
from factory.stage import Artifact, StepContext
from factory.stages.import_model.config import Config
from factory.stages.import_model.source import inspect_folder, local_folder, model_card_fields

CHUNK = 16 << 20  # bytes copied at a time: memory stays flat whatever a shard's size


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Copy the source's model folder into `model/`, set its chat template as asked, and describe it in
    `import.json`."""
    output = Path(output)
    source = config.source
    folder = (fetch_input(source, Path(ctx.scratch or output.parent) / "source", ctx.s3_endpoint_url, ctx.s3_region)
              if is_remote(source) else local_folder(source))
    info = inspect_folder(folder, source, config.hub_id)
    model_dir = output / "model"
    tmp = output / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    copied = _copy_folder(folder, tmp)
    added = _factory_template(tmp, info.vocab_rows) if config.chat_template == "factory" else 0
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)

    identity = input_identity(source, bool(config.content_hash), ctx.s3_endpoint_url, ctx.s3_region)
    record = {"source": source, "digest": identity["digest"], "identity": identity["identity"],
              **model_card_fields(info), "license": config.license or info.license,
              "hub_id": config.hub_id or info.hub_id, "vocab_rows": info.vocab_rows, "tokenizer_size": info.tokenizer_size,
              "chat_template": "factory" if config.chat_template == "factory" else ("kept" if info.chat_template else "none"),
              "added_tokens": added}
    (output / "import.json").write_text(json.dumps(record, indent=2) + "\n")
    ctx.log_dataset(name=f"base_model:{record['hub_id'] or Path(source.rstrip('/')).name}", uri=source,
                    digest=identity["digest"], context="base_model",
                    profile={k: record[k] for k in ("architecture", "params", "dtype", "revision", "license")})
    ctx.log.info("imported", source=source, architecture=info.architecture, params=info.params, files=copied,
                 chat_template=record["chat_template"], added_tokens=added)
    return {"params": float(info.params), "weight_bytes": float(info.weight_bytes), "files": float(copied),
            "added_tokens": float(added)}


def _copy_folder(src: Path, dst: Path) -> int:
    """Copy every file under `src` (following the Hub cache's symlinks to their blobs) into `dst`, `CHUNK` bytes at a
    time; hidden folders (.git, .cache) are left out. The number of files."""
    count = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
        count += 1
    if not count:
        raise InputError(f"{src}: no files to import")
    return count


def _factory_template(model_dir: Path, vocab_rows: int) -> int:
    """Give the folder's tokenizer the factory's chat template and its special tokens; when the tokens outgrow the
    embedding, load the model and grow its embeddings (new rows initialised as transformers does: the mean of the
    old ones). The number of tokens added."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    before = len(tokenizer)
    tokenizer.add_tokens([t for t in CHAT_TOKENS if t not in tokenizer.get_vocab()], special_tokens=True)
    with_chat_template(tokenizer)
    added = len(tokenizer) - before
    if len(tokenizer) > vocab_rows:
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        for old in model_dir.glob("*.safetensors*"):
            old.unlink()
        model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return added
