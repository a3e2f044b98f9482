"""Release a checkpoint as a Hugging Face model folder, with a model card written from its lineage.

    from factory.stages.release import Config, run
    run(Config(model_name="tiny-nemotron-h"), {"model": ckpt, "tokens": tokens, "evaluation": ev}, out, ctx)

Inputs: "model" (a checkpoint of pretrain, compress, distill, sft, rl or preference: `model/` holds
safetensors + config.json), "tokens" (tokenize artifact,
`tokenizer/`), "evaluation" (evaluate artifact, `eval.json`). Output: one folder that stock transformers
loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`: weights as
safetensors, config.json, tokenizer files, generation_config.json, README.md (YAML front matter with
datasets, base_model, metrics as `model-index`; the body lists every ancestor artifact). With the optional
"quantized" input (a quantize artifact of the same model), each quantized variant is a loadable subfolder
(`fp8/`, `nvfp4/`, `fp8-compressed-tensors/`, ...) with its own card section. With `push` and an
`HF_TOKEN` in the environment, the folder is uploaded with `huggingface_hub`.
"""

from factory.lazy import lazy_exports
from factory.stages.release.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.release.stage"})

__all__ = ["Config", "run"]
