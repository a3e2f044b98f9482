"""An imported model's folder, checked without loading a weight: where it is, what it holds, what it is.

    info = inspect_source("hf://Qwen/Qwen3-0.6B@main", step="import_model")
    info.architecture, info.params, info.vocab_rows, info.chat_template     # "Qwen3ForCausalLM", 596049920, ...

The folder is a local path, a Hub reference resolved in the local Hugging Face cache (`factory.hub_cache`), or an
s3:// prefix, of which only the small files (config, tokenizer, index) and the first bytes of every safetensors shard
(its header) are read into a scratch folder. The checks, each one `InputError` naming the step and what to fix:

- `config.json` is there and names a causal-LM architecture transformers loads without remote code;
- the weights are safetensors, and the shards agree with their index (`factory.checkpoint_files`);
- every tensor the architecture builds (on the meta device: no memory) is in the shards with its shape;
- the tokenizer loads, and its vocabulary fits the embedding's rows.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from factory.checkpoint_files import safetensors_header, shard_tensors
from factory.errors import InputError
from factory.hub_cache import hub_snapshot, is_hub_ref, parse_hub_ref, snapshot_commit
from factory.sources import is_remote, list_input, open_listed

SMALL_FILE = 64 << 20
DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "U8": 1,
               "I8": 1, "BOOL": 1}  # config, tokenizer, index and template files are far smaller; a larger one is not read


@dataclass(frozen=True)
class ModelFolder:
    """What an imported model is, from its folder's small files and safetensors headers."""

    folder: Path  # the local folder (for an s3:// source, the scratch copy of its small files and headers)
    architecture: str  # e.g. "LlamaForCausalLM"
    model_type: str  # e.g. "llama"
    params: int  # parameters stored in the shards
    dtype: str  # the dtype most parameters are stored in (safetensors names: BF16, F32, ...)
    weight_bytes: int
    vocab_rows: int  # rows of the input embedding
    tokenizer_size: int
    chat_template: bool
    license: str | None
    hub_id: str | None
    revision: str | None  # the commit of a Hub snapshot
    config: Any = None  # the transformers config config.json describes (factory plan costs later steps from it)


def local_folder(source: str, scratch: Path | None = None, endpoint_url: str | None = None,
                 region: str | None = None) -> Path:
    """The folder to read `source` from: a local path as it is, a Hub reference's cached snapshot, or for an s3://
    prefix a scratch folder holding its small files whole and its safetensors shards as their headers only."""
    if is_hub_ref(source):
        return hub_snapshot(source)
    if not is_remote(source):
        return Path(source.removeprefix("file://")).expanduser()
    shadow = Path(tempfile.mkdtemp(prefix="factory-import-", dir=scratch))
    for f in list_input(source, endpoint_url, region):
        target = shadow / f.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_listed(source, f, endpoint_url, region) as stream, open(target, "wb") as out:
            if f.rel.endswith(".safetensors"):
                header = json.dumps(safetensors_header(stream, f"{source}/{f.rel}")).encode()
                out.write(len(header).to_bytes(8, "little") + header)
            elif f.size <= SMALL_FILE:
                shutil.copyfileobj(stream, out)
    return shadow


def read_config(source: str, endpoint_url: str | None = None, region: str | None = None) -> dict[str, Any]:
    """The source's `config.json`, read alone (one small file, wherever the folder is)."""
    if is_remote(source):
        found = [f for f in list_input(source, endpoint_url, region) if f.rel == "config.json"]
        if not found:
            raise InputError(f"{source}: no config.json; a model folder is what `save_pretrained` writes")
        with open_listed(source, found[0], endpoint_url, region) as stream:
            raw = stream.read(SMALL_FILE)
    else:
        path = local_folder(source) / "config.json"
        if not path.is_file():
            raise InputError(f"{path}: missing; a model folder is what `save_pretrained` writes")
        raw = path.read_bytes()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise InputError(f"{source}/config.json: not JSON ({e})") from None


def inspect_source(source: str, step: str, hub_id: str | None = None, endpoint_url: str | None = None,
                   region: str | None = None) -> ModelFolder:
    """Check the model folder `source` names and describe it (see the module docstring); an s3:// source through
    `endpoint_url` and `region` (the spec's storage settings; None: boto3's own)."""
    try:
        return inspect_folder(local_folder(source, None, endpoint_url, region), source, hub_id)
    except InputError as e:
        raise InputError(f"{step}: {e}") from None


def inspect_folder(folder: Path, source: str, hub_id: str | None = None) -> ModelFolder:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"{source}: no config.json; a model folder is what `save_pretrained` writes (config.json, "
                         f"safetensors weights, tokenizer files)")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as e:
        raise InputError(f"{source}: config.json names an architecture transformers {transformers.__version__} does "
                         f"not load without remote code ({str(e).splitlines()[0]})") from None
    architecture = (getattr(config, "architectures", None) or [""])[0]
    if not architecture.endswith("ForCausalLM") or type(config) not in AutoModelForCausalLM._model_mapping:
        raise InputError(f"{source}: {architecture or config.model_type!r} is not a causal LM that "
                         "AutoModelForCausalLM builds; import a *ForCausalLM checkpoint")
    tensors = shard_tensors(folder)
    with torch.device("meta"):
        expected = AutoModelForCausalLM.from_config(config).state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    needed = {n: tuple(t.shape) for n, t in expected.items() if not (tied and n.endswith("lm_head.weight"))}
    if len(needed.keys() & tensors.keys()) * 2 >= len(needed):  # the checkpoint names tensors as the modules do
        missing = [n for n in needed if n not in tensors]
        if missing:
            raise InputError(f"{source}: the shards lack {len(missing)} tensors {architecture} needs (first: "
                             f"{missing[0]}); the weights do not match config.json")
        wrong = [(n, tensors[n].shape, shape) for n, shape in needed.items() if tensors[n].shape != shape]
        if wrong:
            name, got, want = wrong[0]
            raise InputError(f"{source}: tensor {name} is {list(got)} in the shards, {list(want)} by config.json "
                             f"({len(wrong)} disagree); the weights do not match config.json")
    else:  # saved under the Hub's names (NemotronH: backbone.*, experts apart), which transformers converts on load
        stored, want = sum(_numel(t.shape) for t in tensors.values()), sum(_numel(s) for s in needed.values())
        if stored != want:
            raise InputError(f"{source}: the shards hold {stored} weights, {architecture} as config.json describes it "
                             f"{want}; the weights do not match config.json")
    vocab_rows = int(expected[_input_embedding(expected)].shape[0])
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"{source}: no tokenizer loads from the folder ({str(e).splitlines()[0]}); save the model's "
                         "tokenizer beside its weights") from None
    if len(tokenizer) > vocab_rows:
        raise InputError(f"{source}: the tokenizer has {len(tokenizer)} tokens, more than the embedding's {vocab_rows} "
                         "rows; a token past the last row has no embedding (use the model's own tokenizer)")
    counts: dict[str, int] = {}
    for info in tensors.values():
        counts[info.dtype] = counts.get(info.dtype, 0) + _numel(info.shape)
    hub_repo = parse_hub_ref(source)[0] if is_hub_ref(source) else None
    return ModelFolder(
        folder=folder, architecture=architecture, model_type=config.model_type, params=sum(counts.values()),
        dtype=max(counts, key=counts.__getitem__) if counts else "F32",
        weight_bytes=sum(n * DTYPE_BYTES.get(d, 4) for d, n in counts.items()),
        vocab_rows=vocab_rows, tokenizer_size=len(tokenizer), chat_template=bool(getattr(tokenizer, "chat_template", None)),
        license=_card_license(folder), hub_id=hub_id or hub_repo, revision=snapshot_commit(folder) if hub_repo else None,
        config=config)


def _input_embedding(state: dict[str, Any]) -> str:
    return next(n for n in state if n.endswith("embed_tokens.weight") or n.endswith("embeddings.weight"))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _card_license(folder: Path) -> str | None:
    """The `license:` of the folder's README front matter (the Hub's model card), when it has one."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(errors="replace")
    front = re.match(r"^---\n(.*?)\n---", text, flags=re.S)
    found = re.search(r"^license:\s*([\w.\-+]+)\s*$", front.group(1), flags=re.M) if front else None
    return found.group(1) if found else None


def model_card_fields(info: ModelFolder) -> dict[str, Any]:
    """What the release card says of the base model (`import.json`)."""
    return {"architecture": info.architecture, "model_type": info.model_type, "params": info.params, "dtype": info.dtype,
            "hub_id": info.hub_id, "revision": info.revision, "license": info.license}
