"""import_model on synthetic checkpoints of growing size: its plan-time check and its import, time and peak memory
against the checkpoint's size, beside what a user would do instead (`AutoModelForCausalLM.from_pretrained` then
`save_pretrained`: load every weight, write it back).

Each checkpoint is a Llama-shaped model in BF16, sharded per layer with an index, its weights left as whatever bytes
`torch.empty` holds (their values do not matter to an import). Each measurement runs in a fresh process, whose peak
resident memory (`ru_maxrss`) is read at its end.

    .venv/bin/python bench/import_model.py                  # 0.5, 1 and 2 GB: a few minutes on 2 cores
    .venv/bin/python bench/import_model.py --sizes 1 4 --skip-reference
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
what, source, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
start = time.perf_counter()
if what == "check":
    from factory.stages.import_model.source import inspect_source
    inspect_source(source, "import_model")
elif what == "import":
    from factory.stage import StepContext
    from factory.stages import import_model
    import_model.run(import_model.Config(source=source), {}, out, StepContext("import_model"))
else:  # what a user would do instead: load it, save it
    import torch
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).save_pretrained(out)
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic_checkpoint(folder: Path, gigabytes: float) -> int:
    """A Llama-shaped BF16 checkpoint of about `gigabytes`, one shard per layer (bounded memory to write); its bytes."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    hidden, vocab = 2048, 32000
    per_layer = 2 * (4 * hidden * hidden + 3 * hidden * 5504 + 2 * hidden)  # attention, MLP, norms (bytes, BF16)
    layers = max(1, round((gigabytes * 2**30 - 2 * 2 * vocab * hidden) / per_layer))
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=5504, num_hidden_layers=layers,
                         num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=False)
    config.architectures = ["LlamaForCausalLM"]
    folder.mkdir(parents=True)
    config.to_json_file(folder / "config.json")
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    shards: dict[str, dict[str, tuple[int, ...]]] = {"model-embeddings.safetensors": shapes}
    for i in range(layers):
        p = f"model.layers.{i}."
        shards[f"model-layer-{i:04d}.safetensors"] = {
            **{f"{p}self_attn.{n}_proj.weight": (hidden, hidden) for n in "qkvo"},
            f"{p}mlp.gate_proj.weight": (5504, hidden), f"{p}mlp.up_proj.weight": (5504, hidden),
            f"{p}mlp.down_proj.weight": (hidden, 5504),
            f"{p}input_layernorm.weight": (hidden,), f"{p}post_attention_layernorm.weight": (hidden,)}
    weight_map, total = {}, 0
    for shard, tensors in shards.items():
        save_file({n: torch.empty(s, dtype=torch.bfloat16) for n, s in tensors.items()}, folder / shard)
        weight_map |= {n: shard for n in tensors}
        total += (folder / shard).stat().st_size
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _tokenizer().save_pretrained(folder)
    return total


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 1000)}}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def measure(what: str, source: Path, out: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", MEASURE, what, str(source), str(out)], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="checkpoint sizes, GB")
    parser.add_argument("--skip-reference", action="store_true", help="leave out load-and-save (it needs RAM ~ 2x size)")
    args = parser.parse_args()
    print(f"{'size GB':>8} {'check s':>8} {'check MB':>9} {'import s':>9} {'import MB':>10} {'MB/GB':>7}"
          + ("" if args.skip_reference else f" {'load+save s':>12} {'load+save MB':>13}"))
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
            source = Path(tmp) / "source"
            gb = synthetic_checkpoint(source, size) / 2**30
            check = measure("check", source, Path(tmp) / "unused")
            imported = measure("import", source, Path(tmp) / "import")
            row = (f"{gb:8.2f} {check['seconds']:8.1f} {check['peak_mb']:9.0f} {imported['seconds']:9.1f} "
                   f"{imported['peak_mb']:10.0f} {imported['peak_mb'] / gb:7.0f}")
            if not args.skip_reference:
                ref = measure("reference", source, Path(tmp) / "reference")
                row += f" {ref['seconds']:12.1f} {ref['peak_mb']:13.0f}"
            print(row, flush=True)
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB peak, the synthetic writer)")


if __name__ == "__main__":
    main()
