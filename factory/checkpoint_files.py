"""What a Hugging Face model folder holds, read without loading a weight: safetensors headers and the shard index.

    header = safetensors_header(open("model.safetensors", "rb"))    # {"model.embed_tokens.weight": {"dtype", "shape",
                                                                     #  "data_offsets"}, ..., "__metadata__": {...}}
    tensors = shard_tensors(folder)                                  # every tensor's name -> (shard file, dtype, shape)

A safetensors file starts with an 8-byte little-endian header length N and N bytes of JSON naming every tensor's dtype,
shape and byte range (the format's specification, huggingface/safetensors); reading those N + 8 bytes costs the same
for a 100 MB shard and a 10 GB one. Raw-input identities (`factory.sources`) hash the headers beside the listing, and
the import stage checks a folder's shards against its index with them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from factory.errors import InputError

MAX_HEADER = 100 << 20  # the safetensors library refuses headers over 100 MB too
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def safetensors_header(stream: BinaryIO, where: str = "safetensors file") -> dict[str, Any]:
    """The parsed JSON header of a safetensors stream (read from its start); an `InputError` naming `where` when the
    bytes are not one."""
    head = stream.read(8)
    if len(head) != 8:
        raise InputError(f"{where}: not a safetensors file (shorter than its 8-byte header length)")
    (size,) = struct.unpack("<Q", head)
    if size > MAX_HEADER:
        raise InputError(f"{where}: not a safetensors file (header of {size} bytes, over {MAX_HEADER})")
    raw = stream.read(size)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if len(raw) != size or not isinstance(header, dict):
        raise InputError(f"{where}: not a safetensors file (its header is not {size} bytes of JSON)")
    return header


class TensorInfo(NamedTuple):
    shard: str
    dtype: str
    shape: tuple[int, ...]


def shard_tensors(folder: Path) -> dict[str, TensorInfo]:
    """Every tensor of a model folder, from its safetensors headers: `model.safetensors`, or the shards that
    `model.safetensors.index.json` names, checked against the index (each named tensor in the shard it names, each
    shard's tensors all in the index). One `InputError` naming the file for a missing or inconsistent one."""
    folder = Path(folder)
    index_path = folder / INDEX
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{index_path}: not a safetensors index ({e}); it needs a `weight_map` of tensor -> shard") from None
        shards = sorted(set(weight_map.values()))
    elif (folder / SINGLE).is_file():
        weight_map, shards = None, [SINGLE]
    else:
        found = sorted(p.name for p in folder.glob("*.safetensors")) or sorted(p.name for p in folder.glob("*.bin"))
        raise InputError(f"{folder}: no weights in safetensors form ({SINGLE} or {INDEX} with its shards); found "
                         f"{found or 'none'}" + ("; convert .bin weights to safetensors first" if found else ""))
    tensors: dict[str, TensorInfo] = {}
    for shard in shards:
        path = folder / shard
        if not path.is_file():
            raise InputError(f"{index_path}: names shard {shard}, which the folder does not hold")
        with open(path, "rb") as stream:
            header = safetensors_header(stream, str(path))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if weight_map is not None and weight_map.get(name) != shard:
                raise InputError(f"{path}: holds tensor {name}, which {INDEX} places in "
                                 f"{weight_map.get(name, 'no shard')}; the shards disagree with the index")
            tensors[name] = TensorInfo(shard, info["dtype"], tuple(info["shape"]))
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise InputError(f"{index_path}: names {len(missing)} tensors no shard holds (first: {missing[0]}); the "
                             "shards disagree with the index")
    return tensors
