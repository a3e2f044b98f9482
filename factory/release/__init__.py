"""Release a checkpoint as a Hugging Face model folder, with a model card written from its lineage.

    from factory.release import Config, run
    run(Config(model_name="tiny-nemotron-h"), {"model": ckpt, "tokens": tokens, "evaluation": ev}, out, ctx)

Inputs: "model" (pretrain artifact, `model/` holds safetensors + config.json), "tokens" (tokenize artifact,
`tokenizer/`), "evaluation" (evaluate artifact, `eval.json`). Output: one folder that stock transformers
loads with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`: weights as
safetensors, config.json, tokenizer files, generation_config.json, README.md (YAML front matter with
datasets, base_model, metrics as `model-index`; the body lists every ancestor artifact). With the optional
"quantized" input (a quantize artifact of the same model), each quantized variant is a loadable subfolder
(`fp8/`, `nvfp4/`, `fp8-compressed-tensors/`, ...) with its own card section. With `push` and an
`HF_TOKEN` in the environment, the folder is uploaded with `huggingface_hub`.
"""

from factory.release.config import Config
from factory.release.folder import copy_tokenizer, copy_weights, write_generation_config, write_model_config
from factory.release.hub import push_to_hub
from factory.release.model_card import lineage_chain, model_card
from factory.release.stage import KIND, run
from factory.release.variants import copy_variants, variant_sections

__all__ = ["KIND", "Config", "copy_tokenizer", "copy_variants", "copy_weights", "lineage_chain", "model_card", "push_to_hub", "run",
           "variant_sections", "write_generation_config", "write_model_config"]
