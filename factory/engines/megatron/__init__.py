"""Megatron-Core as a pretraining engine: the model spec, precision and parallel layout as Megatron-Core /
Megatron-Bridge arguments, and the Megatron <-> Hugging Face state-dict adapter. Everything here is data
and tensor renaming; none of it imports megatron-core, so it is tested on CPU."""

from factory.engines.megatron.model_args import megatron_cli_args, megatron_model_args
from factory.engines.megatron.parallel_args import megatron_parallel_args
from factory.engines.megatron.precision_args import te_recipe
from factory.engines.megatron.state_dict import MegatronAdapter

__all__ = ["MegatronAdapter", "megatron_cli_args", "megatron_model_args", "megatron_parallel_args", "te_recipe"]
