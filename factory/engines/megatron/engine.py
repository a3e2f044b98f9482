"""The Megatron engine: Megatron-Core's hybrid `MambaModel` trained through the training-stage shell.

    engine = MegatronEngine(layout=config.layout, expert=config.expert_parallel)
    with TrainingShell(config, output, ctx, engine=engine) as shell:          # + Megatron's parallel state
        model = shell.prepare(build_model(model_config, vocab, device="meta"))   # a MambaModel in Megatron DDP
        result = shell.fit(shell.trainer(MegatronCausalLM(model), data, tokenizer=tokenizer))

The transformers model the stage hands to `prepare` says what to build (its `NemotronHConfig`, through
`model_config_of` and `megatron_model_args`) and what `model/` is exported as; when it holds weights (continued
pretraining from an `init` model) they are loaded through `MegatronAdapter.from_hf`, otherwise Megatron initialises
its own. What the shell gives every engine stays the same: the data and its order, the WSD schedule, the step's loss
(summed over the step's label tokens on every data-parallel rank, divided by their count), the non-finite skip, the
metrics, the plot, and `model/`, written through `MegatronAdapter.to_hf` in the factory's release format.

Megatron's own: its parallel state from the layout (tensor x pipeline x context x data = the torchrun world size;
expert ranks carved out of the data ranks), Megatron DDP, distributed checkpoints (`dist_checkpointing`: every rank
writes its shards into `checkpoints/.tmp-step-N/`, renamed to `step-N/` once whole, so a kill -9 at any moment leaves
the last complete one; a checkpoint reshards to another layout), and, on a GPU, Transformer Engine's layer specs with
the spec's FP8 / NVFP4 recipe (`te_recipe`), mamba-ssm's kernels, Megatron's (distributed) optimizer and pipeline
schedules. On a CPU (`factory.engines.megatron.cpu` says why and how) the layer specs are local, the optimizer is the
factory's AdamW, the micro-batch loop the factory's, and pipeline, context and expert parallelism, the distributed
optimizer and FP8 / NVFP4 are refused with one line each.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.activations import squared_relu
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.dist_checkpointing.optimizer import get_param_id_to_sharded_param_map, optim_state_to_sharding_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.models.mamba.mamba_model import MambaModel
from megatron.core.tensor_parallel import VocabParallelEmbedding
from megatron.core.tensor_parallel import random as megatron_random
from megatron.core.transformer.transformer_config import TransformerConfig
from torch import nn

from factory.cost.layout import ParallelLayout
from factory.engines.megatron.cpu import cpu_runtime, cpu_stack_spec, local_rows
from factory.engines.megatron.model_args import MODEL_KWARGS, VOCAB_DIVISOR, megatron_model_args, model_config_of
from factory.engines.megatron.parallel_args import megatron_parallel_args
from factory.engines.megatron.precision_args import te_recipe
from factory.engines.megatron.state_dict import MegatronAdapter
from factory.errors import SpecError, UserError
from factory.logs import get_logger
from factory.train.checkpoint import checkpoint_dir
from factory.train.objectives.causal_lm import IGNORE_INDEX, CausalLMObjective, LossOutput
from factory.train.optim import param_groups
from factory.train.shell import Engine, HFExportCallback, TrainingShell
from factory.train.trainer import AUTOCAST, Callback, StepMetrics, Trainer, TrainState

log = get_logger("factory.engines.megatron")
_STEP = re.compile(r"^step-(\d{6,})$")
DONE = "meta.json"  # written last into a checkpoint folder, before the rename that makes it visible


class MegatronEngine(Engine):
    """Megatron-Core trains the model (see the module docstring). `layout`: tensor, pipeline and context parallel
    sizes, data parallel replicas and the distributed optimizer (`sharding: optimizer`); None is data parallel over
    every rank. `expert`: expert-parallel size, carved out of the data-parallel ranks."""

    name = "megatron"

    def __init__(self, layout: ParallelLayout | None = None, expert: int = 1) -> None:
        self.layout, self.expert = layout, expert
        self.module: MambaModel | None = None  # the Megatron model, unwrapped
        self.ddp: DistributedDataParallel | None = None
        self._stack = contextlib.ExitStack()

    # --- the run -------------------------------------------------------------------------------------------------
    def start(self, shell: TrainingShell) -> None:
        if importlib.util.find_spec("psutil") is None:
            # megatron-core does not declare it; without it the forked checkpoint writer dies and the parent waits
            # forever for it
            raise UserError("engine megatron: psutil is not installed, and megatron-core's checkpoint writer needs it "
                            "(without it the first checkpoint hangs); pip install psutil")
        self.shell, self.config, self.cpu = shell, shell.config, not str(shell.device).startswith("cuda")
        layout = self.layout or ParallelLayout(data=shell.world_size)
        if layout.gpus != shell.world_size:
            raise SpecError(f"layout: data x tensor x pipeline x context = {layout.gpus}, but {shell.world_size} "
                            f"rank{'s' if shell.world_size > 1 else ''} run (torchrun's WORLD_SIZE)")
        if self.cpu:
            refused = {"layout.pipeline": layout.pipeline > 1, "layout.context": layout.context > 1,
                       "expert_parallel": self.expert > 1, "layout.sharding": layout.sharding != "none",
                       "precision": self.config.precision in ("fp8", "nvfp4")}
            if any(refused.values()):
                field = next(k for k, v in refused.items() if v)
                raise SpecError(f"{field}: on a CPU the Megatron engine runs tensor and data parallelism in fp32 or bf16 "
                                "(pipeline and expert parallelism, the distributed optimizer and FP8 / NVFP4 need a "
                                "CUDA GPU with Transformer Engine)")
        else:
            missing = [m for m in ("transformer_engine", "mamba_ssm") if importlib.util.find_spec(m) is None]
            if missing:
                raise UserError(f"engine megatron on a GPU needs {' and '.join(missing)} (Transformer Engine's layer "
                                "specs, mamba-ssm's Mamba kernels); install them")
        self.layout_used = layout
        try:
            if not torch.distributed.is_initialized():  # one process: Megatron's parallel state wants a group anyway
                torch.distributed.init_process_group("gloo" if self.cpu else "nccl", store=torch.distributed.HashStore(),
                                                     rank=0, world_size=1)
                self._stack.callback(torch.distributed.destroy_process_group)
            parallel_state.initialize_model_parallel(
                layout.tensor, layout.pipeline, context_parallel_size=layout.context,
                expert_model_parallel_size=self.expert)
            self._stack.callback(parallel_state.destroy_model_parallel)
            self.tp_rank = parallel_state.get_tensor_model_parallel_rank()
            if self.cpu:
                self._stack.enter_context(cpu_runtime(self.config.seed, self.tp_rank))
            else:
                megatron_random.model_parallel_cuda_manual_seed(self.config.seed)
        except BaseException:
            self._stack.close()
            raise

    def stop(self) -> None:
        self._stack.close()

    # --- the model -----------------------------------------------------------------------------------------------
    def prepare(self, shell: TrainingShell, model: nn.Module) -> nn.Module:
        """Build the Megatron model `model` describes (loading its weights unless it is on the meta device) and wrap
        it in Megatron DDP; `model` is what `model/` is exported as."""
        shell.hold(model)
        self.model_config = model_config_of(model.config)
        self.vocab = model.config.vocab_size
        tp = self.layout_used.tensor
        self.padded_vocab = -(-self.vocab // (VOCAB_DIVISOR * tp)) * VOCAB_DIVISOR * tp  # Megatron's padding
        self.transformer_config = self._transformer_config()
        self.adapter = MegatronAdapter(self.model_config, fused_norms=not self.cpu, grouped_experts=not self.cpu,
                                       vocab_size=self.vocab, padded_vocab_size=self.padded_vocab)
        if self.cpu:
            spec = cpu_stack_spec(self.model_config.chunk_size, self.model_config.conv_kernel,
                                  self.model_config.moe_num_experts or None)
        else:
            from megatron.core.models.mamba.mamba_layer_specs import mamba_stack_spec as spec  # imports TE: GPU only
        self.module = MambaModel(
            config=self.transformer_config, mamba_stack_spec=spec, vocab_size=self.padded_vocab,
            max_sequence_length=self.config.seq_len, hybrid_override_pattern=self.model_config.pattern,
            position_embedding_type="none", share_embeddings_and_output_weights=False,
            pre_process=parallel_state.is_pipeline_first_stage(), post_process=parallel_state.is_pipeline_last_stage())
        if not self.cpu:
            self.module.cuda()
        if next(model.parameters()).device.type != "meta":
            self.load_hf_state(model.state_dict())
        ddp_config = DistributedDataParallelConfig(grad_reduce_in_fp32=True,
                                                   use_distributed_optimizer=self.layout_used.sharding == "optimizer")
        self.ddp = DistributedDataParallel(self.transformer_config, ddp_config, self.module)
        self.ddp.broadcast_params()  # data-parallel replicas start equal
        return self.ddp

    def _transformer_config(self) -> TransformerConfig:
        args = megatron_model_args(self.model_config, self.vocab, self.config.seq_len)
        fields = {k: v for k, v in args.items() if k not in MODEL_KWARGS}
        fields.update(megatron_parallel_args(self.layout_used, self.model_config, self.expert, where="layout"))
        fields.pop("data_parallel_size")
        for ddp_field in ("use_distributed_optimizer", "use_megatron_fsdp"):  # DistributedDataParallelConfig's
            fields.pop(ddp_field)
        if self.config.precision != "fp32" and not self.cpu:  # on CPU bf16 is autocast over fp32 weights, as the factory's
            fields.update(te_recipe(self.config.precision, self.config.precision_options, self.model_config.num_layers)
                          ["megatron"])
            fields["params_dtype"] = torch.bfloat16
        if self.cpu:
            fields.update(sequence_parallel=False,  # torch norms (the CPU specs) refuse sequence parallelism
                          moe_grouped_gemm=False,  # TE's grouped GEMM: the local spec runs the experts one by one
                          use_cpu_initialization=True,  # full-size draws sliced per rank: any layout, the same model
                          gradient_accumulation_fusion=False, bias_dropout_fusion=False, masked_softmax_fusion=False,
                          persist_layer_norm=False, apply_rope_fusion=False)
        return TransformerConfig(activation_func=squared_relu, hidden_dropout=0.0, attention_dropout=0.0,
                                 calculate_per_token_loss=True, **fields)

    # --- full (Hugging Face) states <-> this rank's shards ---------------------------------------------------------
    def _parts(self, name: str) -> tuple[int, ...] | None:
        """Full widths of the parts stacked in a Mamba mixer's `in_proj` ([z | x | B | C | dt]) or `conv1d`
        ([x | B | C]): each part is split over the tensor-parallel ranks on its own."""
        c = self.model_config
        d, gn = c.mamba_num_heads * c.mamba_head_dim, c.mamba_groups * c.ssm_state_size
        if name.endswith("mixer.in_proj.weight"):
            return d, d, gn, gn, c.mamba_num_heads
        if name.endswith(("mixer.conv1d.weight", "mixer.conv1d.bias")):
            return d, gn, gn
        return None

    def _local_names(self) -> dict[str, str]:
        """This rank's state-dict names -> the whole model's (pipeline stages number their layers from 0, expert
        ranks their experts)."""
        offset_of = {f"decoder.layers.{i}.": f"decoder.layers.{layer.layer_number - 1}."
                     for i, layer in enumerate(self.module.decoder.layers)}
        ep, ep_rank = parallel_state.get_expert_model_parallel_world_size(), parallel_state.get_expert_model_parallel_rank()
        per_rank = (self.model_config.moe_num_experts or 0) // ep
        out = {}
        for name in self.module.state_dict():
            if name.endswith("_extra_state"):
                continue
            prefix = re.match(r"decoder\.layers\.\d+\.", name)
            full = offset_of[prefix.group(0)] + name[prefix.end():] if prefix else name
            full = re.sub(r"(local_experts\.|linear_fc\d\.weight)(\d+)",
                          lambda m: f"{m.group(1)}{int(m.group(2)) + ep_rank * per_rank}", full) if ".experts." in full else full
            out[name] = full
        return out

    def _tp_group(self, name: str) -> Any:
        if ".experts." in name:
            return parallel_state.get_expert_tensor_parallel_group()
        return parallel_state.get_tensor_model_parallel_group()

    @torch.no_grad()
    def load_hf_state(self, hf_state: Mapping[str, torch.Tensor]) -> None:
        """Load a whole Hugging Face state dict (every rank passes it) into this rank's shards."""
        full = self.adapter.from_hf(hf_state)
        local = self.module.state_dict(keep_vars=True)  # parameters and buffers themselves, with their TP attributes
        for name, full_name in self._local_names().items():
            tensor, param = full[full_name], local[name]
            group = self._tp_group(name)
            tp, rank = group.size(), group.rank()
            if getattr(param, "tensor_model_parallel", False) and tp > 1:
                parts = self._parts(name)
                dim = getattr(param, "partition_dim", 0)
                tensor = local_rows(tensor, parts, rank, tp) if parts else tensor.chunk(tp, dim)[rank]
            param.copy_(tensor)

    @torch.no_grad()
    def full_hf_state(self) -> dict[str, torch.Tensor]:
        """The whole model under Hugging Face names on CPU, complete on rank 0 (a collective: every rank calls it)."""
        local = self.module.state_dict(keep_vars=True)
        gathered = {}
        for name, full_name in self._local_names().items():
            param = local[name]
            tensor = param.detach()
            group = self._tp_group(name)
            tp = group.size()
            if getattr(param, "tensor_model_parallel", False) and tp > 1:
                pieces = [torch.empty_like(tensor) for _ in range(tp)]
                torch.distributed.all_gather(pieces, tensor.contiguous(), group=group)
                parts = self._parts(name)
                if parts:  # rank r holds [z_r | x_r | ...]: regroup as [z_0 z_1 .. | x_0 x_1 .. | ...]
                    split = [piece.split([p // tp for p in parts]) for piece in pieces]
                    tensor = torch.cat([torch.cat([s[k] for s in split]) for k in range(len(parts))])
                else:
                    tensor = torch.cat(pieces, dim=getattr(param, "partition_dim", 0))
            # fp32, as the factory's engine exports (a GPU run's bf16 weights widened, as transformers would on load)
            gathered[full_name] = tensor.detach().float().cpu() if tensor.is_floating_point() else tensor.cpu()
        if parallel_state.get_expert_model_parallel_world_size() > 1:  # every expert rank holds its own experts
            shards: list[Any] = [None] * parallel_state.get_expert_model_parallel_world_size()
            torch.distributed.all_gather_object(shards, {k: v for k, v in gathered.items() if ".experts." in k},
                                                group=parallel_state.get_expert_model_parallel_group())
            for shard in shards:
                gathered.update(shard)
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:  # every stage holds its own layers
            group = parallel_state.get_pipeline_model_parallel_group()
            stages: list[Any] = [None] * group.size()
            torch.distributed.all_gather_object(stages, gathered, group=group)
            gathered = {k: v for stage in stages for k, v in stage.items()}
        return self.adapter.to_hf(gathered) if torch.distributed.get_rank() == 0 else {}

    # --- the shell's callbacks and trainer -----------------------------------------------------------------------
    def trainer(self, shell: TrainingShell, objective: nn.Module, data: Any, callbacks: Sequence[Callback]) -> Trainer:
        return MegatronTrainer(self, objective, data, shell.config, callbacks, shell.device)

    def checkpoints(self, shell: TrainingShell) -> Callback:
        return MegatronCheckpointCallback(shell.output / "checkpoints", shell.config.checkpoint_interval,
                                          shell.config.keep_checkpoints)

    def export(self, shell: TrainingShell, tokenizer: Any, extra: Mapping[str, nn.Module],
               files: Mapping[str, Callable[[], str]]) -> Callback:
        if extra:
            raise SpecError("engine megatron: exports the model alone (no extra modules beside it)")
        return MegatronExportCallback(self, shell.output / "model", shell.model, shell.plain, tokenizer, {}, files)


class MegatronCausalLM(CausalLMObjective):
    """Next-token cross entropy of a Megatron `MambaModel` (in Megatron DDP): Megatron's vocab-parallel loss per
    token, summed over the label tokens (IGNORE_INDEX targets masked), as `CausalLMObjective` sums transformers'."""

    def forward(self, batch: Mapping[str, torch.Tensor]) -> LossOutput:
        input_ids = batch["input_ids"][:, :-1]  # (B, T)
        targets = self.targets(batch)  # (B, T)
        keep = targets != IGNORE_INDEX
        mask = causal_mask(input_ids.shape[1], input_ids.device)
        per_token = self.model(input_ids, None, mask, labels=targets.masked_fill(~keep, 0))  # (B, T) float32
        return LossOutput((per_token.float() * keep).sum(), int(keep.sum()))


def causal_mask(length: int, device: torch.device) -> torch.Tensor | None:
    """The attention mask of the local (CPU) attention, (1, 1, T, T) True above the diagonal: its default mask is
    built on a CUDA device. Transformer Engine's attention (GPU) builds its own causal mask: None."""
    if device.type == "cuda":
        return None
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)[None, None]


class MegatronTrainer(Trainer):
    """The shell's trainer loop (callbacks, resume, the skip rule) with Megatron's step: batches split over the
    data-parallel ranks only (tensor and pipeline ranks of one replica see the same rows), gradients reduced by
    Megatron DDP, the gradient norm over the model-parallel shards. On CPU the micro-batch loop and AdamW are the
    factory's; on a GPU, Megatron's pipeline schedule and (distributed) optimizer."""

    def __init__(self, engine: MegatronEngine, objective: nn.Module, data: Any, config: Any,
                 callbacks: Sequence[Callback], device: str) -> None:
        super().__init__(objective, data, config, callbacks=callbacks, device=device)
        self.engine, self.ddp = engine, engine.ddp
        self.data_rank = parallel_state.get_data_parallel_rank()
        self.data_size = parallel_state.get_data_parallel_world_size()
        self.data_group = parallel_state.get_data_parallel_group()
        if engine.cpu:
            self.optimizer = torch.optim.AdamW(self._param_groups(), lr=config.lr, betas=config.betas, eps=1e-8)
        else:
            self.optimizer = self._megatron_optimizer()
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

    def _param_groups(self) -> list[dict]:
        """The factory's AdamW groups (`factory.train.optim.param_groups`): no decay on 1-D tensors and embeddings,
        counting Megatron's vocab-parallel embedding as one."""
        decay, no_decay = param_groups(self.ddp.module, self.config.weight_decay)
        embeddings = {id(m.weight) for m in self.ddp.module.modules() if isinstance(m, VocabParallelEmbedding)}
        no_decay["params"] += [p for p in decay["params"] if id(p) in embeddings]
        decay["params"] = [p for p in decay["params"] if id(p) not in embeddings]
        return [decay, no_decay]

    def _megatron_optimizer(self) -> Any:
        # GPU only: importing Megatron's optimizer looks for Transformer Engine's or apex's fused Adam
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer.optimizer_config import ParamKey, ParamWithNamePredicate
        from megatron.core.optimizer_param_scheduler import ParamGroupOverride

        cfg, engine = self.config, self.engine
        mixed = engine.transformer_config.params_dtype == torch.bfloat16
        optimizer_config = OptimizerConfig(
            optimizer="adam", lr=cfg.lr, weight_decay=cfg.weight_decay, adam_beta1=cfg.betas[0],
            adam_beta2=cfg.betas[1], adam_eps=1e-8, clip_grad=cfg.grad_clip, bf16=mixed, params_dtype=torch.float32,
            use_distributed_optimizer=engine.layout_used.sharding == "optimizer")
        no_decay = ParamKey(with_name_predicate=ParamWithNamePredicate(
            name="factory_no_decay", fn=lambda param, name: param.ndim < 2 or "word_embeddings" in name))
        optimizer = get_megatron_optimizer(optimizer_config, [self.ddp],
                                           config_overrides={no_decay: ParamGroupOverride(wd_mult=0.0)})
        engine.transformer_config.finalize_model_grads_func = finalize_model_grads
        engine.transformer_config.grad_scale_func = optimizer.scale_loss
        engine.transformer_config.no_sync_func = self.ddp.no_sync
        return optimizer

    # --- one step ------------------------------------------------------------------------------------------------
    def train_step(self) -> StepMetrics:
        start = time.perf_counter()
        lr, batches, tokens = self._begin_step()
        step = self._cpu_step if self.engine.cpu else self._gpu_step
        loss, grad_norm, skipped = step(batches, tokens)
        self.optimizer.zero_grad(set_to_none=True)
        self.ddp.zero_grad_buffer()
        return self._end_step(start, lr, loss, grad_norm, tokens, skipped)

    def _cpu_step(self, batches: list[dict[str, torch.Tensor]], tokens: int) -> tuple[float, float, bool]:
        loss_sum = torch.zeros((), dtype=torch.float32)
        for batch in batches:
            with self._autocast():
                out = self.objective(batch)
            (out.loss_sum / max(tokens, 1)).backward()  # DDP sums over the data ranks: the global mean per token
            loss_sum += out.loss_sum.detach().float()
        loss = (self._data_sum(loss_sum) / max(tokens, 1)).item()
        finalize_model_grads([self.ddp])  # all-reduce over data ranks (and the router's expert-bias update)
        for p in self.params:
            p.grad = p.main_grad  # Megatron DDP accumulates into `main_grad`
        grad_norm = self._grad_norm()
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if not skipped:
            if self.config.grad_clip > 0:
                coef = min(1.0, self.config.grad_clip / (grad_norm + 1e-6))
                if coef < 1.0:
                    torch._foreach_mul_([p.grad for p in self.params], coef)
            self.optimizer.step()
        return loss, grad_norm, skipped

    def _grad_norm(self) -> float:
        """The 2-norm of the whole model's gradient: sharded tensors count on every tensor-parallel rank, replicated
        ones (norms) on rank 0 of the group only; summed over the model-parallel group."""
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        mine = [p.grad for p in self.params if getattr(p, "tensor_model_parallel", False) or tp_rank == 0]
        squares = torch.stack([g.float().pow(2).sum() for g in mine]).sum() if mine else torch.zeros(())
        torch.distributed.all_reduce(squares, group=parallel_state.get_model_parallel_group())
        return squares.sqrt().item()

    def _gpu_step(self, batches: list[dict[str, torch.Tensor]], tokens: int) -> tuple[float, float, bool]:
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32
        from megatron.core.pipeline_parallel import get_forward_backward_func

        def forward_step(data: Iterator[dict[str, torch.Tensor]], model: nn.Module) -> tuple[torch.Tensor, Callable]:
            batch = next(data)
            targets = self.objective.targets(batch)
            keep = targets != IGNORE_INDEX
            output = model(batch["input_ids"][:, :-1], None, None, labels=targets.masked_fill(~keep, 0))

            def loss_func(per_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
                loss_sum = (per_token.float() * keep).sum()
                return loss_sum, keep.sum().int(), {"loss": torch.stack([loss_sum.detach(), keep.sum().float()])}

            return output, loss_func

        rows, length = batches[0]["input_ids"].shape
        reports = get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=iter(batches), model=[self.ddp], num_microbatches=len(batches),
            seq_length=length - 1, micro_batch_size=rows, forward_only=False)
        loss_sum = torch.zeros(2, device=self.device)
        for report in reports:  # filled on the last pipeline stage only
            loss_sum += report["loss"]
        torch.distributed.all_reduce(loss_sum, group=parallel_state.get_pipeline_model_parallel_group())
        loss = (self._data_sum(loss_sum[0]) / max(tokens, 1)).item()
        found_inf = self.optimizer.prepare_grads()
        grad_norm = float(self.optimizer.get_grad_norm())
        skipped = found_inf or not (math.isfinite(loss) and math.isfinite(grad_norm))
        if not skipped:
            for optimizer in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
                if self.config.grad_clip > 0 and optimizer.get_parameters():
                    clip_grad_by_total_norm_fp32(optimizer.get_parameters(), self.config.grad_clip, grad_norm)
            self.optimizer.step_with_ready_grads()
        return loss, grad_norm, skipped

    def _autocast(self) -> Any:
        dtype = AUTOCAST[self.config.precision]
        return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    # --- distributed checkpoints ---------------------------------------------------------------------------------
    def sharded_state(self, loading: bool = False) -> dict[str, Any]:
        """What a checkpoint holds, as Megatron sharded objects: the model's and the optimizer's shards, each rank's
        RNG states, and (saved once, by rank 0) the progress and the sample source's state."""
        model = self.ddp.module.sharded_state_dict()
        if self.engine.cpu:
            optimizer = self._adamw_sharded_state(model, loading)
        else:
            optimizer = self.optimizer.sharded_state_dict(model, is_loading=loading)
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        state = {"model": model, "optimizer": optimizer,
                 "rng": ShardedObject("rng", None if loading else rng_state(), (world,), (rank,), replica_id=0),
                 "trainer": {k: v for k, v in asdict(self.state).items() if k != "last_checkpoint"}}
        if hasattr(self.samples, "state_dict"):
            state["data"] = self.samples.state_dict()
        return state

    def _adamw_sharded_state(self, model: dict[str, Any], loading: bool) -> dict[str, Any]:
        """AdamW's state mapped onto the model's shards (what Megatron's FP32Optimizer does for its own): each
        moment saved as its parameter is, the step once."""
        if loading:
            for p in self.params:
                if not self.optimizer.state[p]:
                    self.optimizer.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p),
                                                   exp_avg_sq=torch.zeros_like(p))
        state = self.optimizer.state_dict()
        steps = {float(s["step"]) for s in state["state"].values()}
        optim_state_to_sharding_state(state, get_param_id_to_sharded_param_map(model, self.params), exclude_keys="step")
        state["state"]["common_step"] = steps.pop() if steps else 0.0
        return state

    def load_sharded(self, state: dict[str, Any], path: Path) -> None:
        self.ddp.module.load_state_dict(state["model"], strict=False)  # TE's `_extra_state` entries come and go
        optimizer = state["optimizer"]
        if self.engine.cpu:
            step = optimizer["state"].pop("common_step")
            for param_state in optimizer["state"].values():
                param_state["step"] = torch.tensor(float(step))
            optimizer["param_groups"] = [{**saved, "params": group["params"]} for saved, group in
                                         zip(optimizer["param_groups"], self.optimizer.state_dict()["param_groups"])]
        self.optimizer.load_state_dict(optimizer)
        self.state = TrainState(**state["trainer"], last_checkpoint=str(path))
        if state.get("data") is not None and hasattr(self.samples, "load_state_dict"):
            self.samples.load_state_dict(state["data"])
        set_rng_state(state["rng"])


def rng_state() -> dict[str, Any]:
    """This rank's generators: torch (CPU, CUDA), Megatron's tracked states, numpy's and Python's."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tracker = megatron_random.get_cuda_rng_tracker().get_states()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "tracker": {name: state.get_state() if isinstance(state, torch.Generator) else state
                        for name, state in tracker.items()},
            "numpy": (kind, keys.tolist(), pos, has_gauss, gauss), "python": random.getstate()}


def set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    megatron_random.get_cuda_rng_tracker().set_states(dict(rng["tracker"]))
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(rng["python"])


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root` (renamed into place with their `meta.json`), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / DONE).is_file()]
    return [p for _, p in sorted(found)]


class MegatronCheckpointCallback(Callback):
    """Resume from the latest complete distributed checkpoint at start; save one every `interval` steps and at the
    end, every rank writing its shards into `.tmp-step-N/`, renamed to `step-N/` by rank 0 once all are written and
    `meta.json` is in; the last `keep` are kept."""

    marks_progress = True

    def __init__(self, root: Path, interval: int, keep: int) -> None:
        self.root, self.interval, self.keep = Path(root), interval, keep

    def on_train_start(self, trainer: MegatronTrainer) -> None:
        if torch.distributed.get_rank() == 0 and self.root.is_dir():
            for stale in self.root.glob(".tmp-*"):  # a write interrupted by a kill
                shutil.rmtree(stale, ignore_errors=True)
        torch.distributed.barrier()
        found = list_checkpoints(self.root)
        if found:
            latest = found[-1]
            trainer.load_sharded(dist_checkpointing.load(trainer.sharded_state(loading=True), str(latest)), latest)
            log.info("resumed", checkpoint=str(latest), step=trainer.state.step, position=trainer.state.position)

    def on_step_end(self, trainer: MegatronTrainer, metrics: StepMetrics) -> None:
        step = trainer.state.step
        if not self.interval or (step % self.interval and step != trainer.config.steps):
            return
        final = checkpoint_dir(self.root, step)
        tmp = self.root / f".tmp-{final.name}"
        if torch.distributed.get_rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        torch.distributed.barrier()
        dist_checkpointing.save(trainer.sharded_state(), str(tmp))
        torch.distributed.barrier()  # every rank's shards are on disk
        if torch.distributed.get_rank() == 0:
            progress = {k: v for k, v in asdict(trainer.state).items() if k != "last_checkpoint"}
            (tmp / DONE).write_text(json.dumps(progress, indent=2) + "\n")
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            shutil.rmtree(final, ignore_errors=True)  # an identical step written by an earlier attempt
            os.replace(tmp, final)
            for old in list_checkpoints(self.root)[:-self.keep]:
                shutil.rmtree(old)
        torch.distributed.barrier()  # nobody moves on (or resumes) before the checkpoint is whole
        if trainer.state.consecutive_nonfinite == 0:
            trainer.state.last_checkpoint = str(final)
        log.info("checkpoint_saved", checkpoint=str(final), step=step)


class MegatronExportCallback(HFExportCallback):
    """`model/` from the Megatron model: its shards gathered (a collective), renamed by `MegatronAdapter.to_hf`
    (vocabulary padding dropped), then written by rank 0 as the factory's engine writes it."""

    def __init__(self, engine: MegatronEngine, *args: Any) -> None:
        super().__init__(*args)
        self.engine = engine

    def model_state(self) -> dict[str, torch.Tensor]:
        return self.engine.full_hf_state()
