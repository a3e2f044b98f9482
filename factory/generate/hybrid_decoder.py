"""A NemotronH model's decode step on preallocated state: one token for each of `slots` sequences per call.

transformers' `generate` on NemotronH grows the attention cache by concatenation (every step copies every
attention layer's keys and values), builds masks and runs its logits processors per token, and takes the
Mamba-2 step through a general path; at the factory's model sizes that per-token overhead, not arithmetic,
sets the speed. `NemotronHDecoder` holds everything a sequence needs in buffers sized once for the run:

- Mamba-2 layers: the convolution ring and SSM state of `factory.generate.mamba_step.MambaStep`;
- attention layers: keys and values (slots, H_kv, max_len, head_dim), written at each sequence's own position;
  NemotronH's attention has no positional encoding, so a sequence's keys need only its own length;
- MLP and MoE layers: the model's own modules (stateless).

Prefill runs the model's own forward on a prompt (its chunked scan) and `load` copies the resulting state into a
slot, so sequences of any length join a running batch (continuous batching) and a prompt shared by G samples is
prefilled once. The model's parameters are read, never copied, so a policy trained between calls decodes with its
current weights. `reference=True` runs `mamba2_step_reference` instead of the fast step (the parity tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from factory.generate.mamba_step import MambaStep, MambaWeights, mamba2_step_reference, selective_state_update_kernel

__all__ = ["NemotronHDecoder", "supports_fast_decode"]


def supports_fast_decode(model: torch.nn.Module) -> bool:
    """True for a transformers NemotronH causal LM (the hybrid the decoder steps); other architectures fall back
    to transformers' `generate`."""
    return type(model).__name__ == "NemotronHForCausalLM" and hasattr(model, "model") and hasattr(model.model, "layers")


class _ReferenceMamba:
    """The reference step on the layout transformers' cache uses: conv (slots, C, K), SSM (slots, H, P, N)."""

    def __init__(self, w: MambaWeights, slots: int, dtype: torch.dtype, device: torch.device) -> None:
        self.w = w
        self.conv = torch.zeros(slots, *w.conv.shape, dtype=dtype, device=device)
        self.ssm = torch.zeros(slots, w.heads, w.head_dim, w.state, dtype=torch.float32, device=device)  # as transformers

    def load(self, slot: int, conv_state: torch.Tensor, ssm_state: torch.Tensor, t: int) -> None:
        self.conv[slot].copy_(conv_state)
        self.ssm[slot].copy_(ssm_state)

    def move(self, src: int, dst: int) -> None:
        self.conv[dst].copy_(self.conv[src])
        self.ssm[dst].copy_(self.ssm[src])

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        n = x.shape[0]
        y, conv, ssm = mamba2_step_reference(x, self.conv[:n], self.ssm[:n], self.w)
        self.conv[:n].copy_(conv)
        self.ssm[:n].copy_(ssm)
        return y


class _Attention:
    """One attention layer's step on a preallocated cache: keys and values (slots, H_kv, max_len, head_dim)."""

    def __init__(self, attn, slots: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        self.attn = attn
        self.heads, self.kv_heads = attn.config.num_attention_heads, attn.config.num_key_value_heads
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.keys = torch.zeros(slots, self.kv_heads, max_len, self.head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)

    def load(self, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """keys, values: (H_kv, T, head_dim) of one prefilled sequence."""
        self.keys[slot, :, : keys.shape[1]].copy_(keys)
        self.values[slot, :, : values.shape[1]].copy_(values)

    def move(self, src: int, dst: int, length: int) -> None:
        self.keys[dst, :, :length].copy_(self.keys[src, :, :length])
        self.values[dst, :, :length].copy_(self.values[src, :, :length])

    def __call__(self, x: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                 L: int) -> torch.Tensor:
        """x: (n, D); positions (n,) where each sequence's new key goes; mask (n, 1, 1, L) the keys each may read,
        None when every sequence reads all L (the kernel then skips the mask)."""
        n, a = x.shape[0], self.attn
        q = a.q_proj(x).view(n, self.heads, 1, self.head_dim)
        self.keys[rows, :, positions] = a.k_proj(x).view(n, self.kv_heads, self.head_dim)
        self.values[rows, :, positions] = a.v_proj(x).view(n, self.kv_heads, self.head_dim)
        out = F.scaled_dot_product_attention(q, self.keys[:n, :, :L], self.values[:n, :, :L], attn_mask=mask,
                                             scale=self.scaling, enable_gqa=self.kv_heads != self.heads)  # (n, H, 1, hd)
        return a.o_proj(out.reshape(n, self.heads * self.head_dim))


class NemotronHDecoder:
    """Decode state for up to `slots` sequences of at most `max_len` tokens (prompt + completion) each."""

    def __init__(self, model: torch.nn.Module, slots: int, max_len: int, reference: bool = False,
                 use_kernel: bool = True) -> None:
        if not supports_fast_decode(model):
            raise TypeError(f"{type(model).__name__}: the fast decoder steps NemotronH models only")
        self.model, self.slots, self.max_len = model, slots, max_len
        param = next(model.parameters())
        dtype, device = param.dtype, param.device
        kernel = selective_state_update_kernel() if (use_kernel and device.type == "cuda" and not reference) else None
        self.kernel_used = kernel is not None
        self.steps: list = []
        for block in model.model.layers:
            if block.block_type == "linear_attention":
                w = MambaWeights.of(block.mixer)
                self.steps.append(_ReferenceMamba(w, slots, dtype, device) if reference
                                  else MambaStep(w, slots, dtype, device, kernel))
            elif block.block_type == "full_attention":
                self.steps.append(_Attention(block.mixer, slots, max_len, dtype, device))
            else:
                self.steps.append(block.mixer)  # MLP, MoE: no state
        self.lengths = [0] * slots  # tokens each slot's attention cache holds
        self.t = 0  # steps taken: the convolution rings' clock
        self._rows = torch.arange(slots, device=device)
        self._span = torch.arange(max_len, device=device)
        self.device = device

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor):
        """Run the model's forward on prompts of one length, ids (m, T) -> (last logits (m, V) float32, its cache)."""
        out = self.model(input_ids=ids.to(self.device), use_cache=True, logits_to_keep=1)
        if out.past_key_values is None:  # transformers drops the cache under gradient checkpointing in train mode
            raise RuntimeError("the model's forward returned no cache; call decode on a model in eval mode or with "
                               "gradient checkpointing off")
        return out.logits[:, -1].float(), out.past_key_values

    def load(self, slot: int, cache, row: int, length: int) -> None:
        """Copy row `row` of a prefill's cache (a prompt of `length` tokens) into `slot`, ready for the next step."""
        for i, step in enumerate(self.steps):
            layer = cache.layers[i]
            if isinstance(step, (MambaStep, _ReferenceMamba)):
                step.load(slot, layer.conv_states[0][row], layer.recurrent_states[0][row], self.t)
            elif isinstance(step, _Attention):
                step.load(slot, layer.keys[row], layer.values[row])
        self.lengths[slot] = length

    def move(self, src: int, dst: int) -> None:
        """Copy slot `src`'s sequence into slot `dst` (to keep the active sequences in the first slots)."""
        for step in self.steps:
            if isinstance(step, _Attention):
                step.move(src, dst, self.lengths[src])
            elif isinstance(step, (MambaStep, _ReferenceMamba)):
                step.move(src, dst)
        self.lengths[dst] = self.lengths[src]

    def fill_context(self, context: int, generator: torch.Generator | None = None) -> None:
        """Make every slot hold `context` tokens: random keys and values (of the scale the prefill wrote) in each
        attention layer. Decode cost depends on the context only through the cache, so a benchmark can measure a
        step at 32k tokens without prefilling them."""
        for step in self.steps:
            if isinstance(step, _Attention):
                for cache in (step.keys, step.values):
                    scale = cache[:, :, : max(1, min(self.lengths))].std()
                    cache[:, :, :context].normal_(generator=generator).mul_(scale)
        self.lengths = [context] * self.slots

    def state_bytes(self, n: int | None = None) -> int:
        """Bytes of the state the first `n` sequences hold now: attention keys and values up to each one's length,
        Mamba convolution windows and SSM states."""
        n = self.slots if n is None else n
        total = 0
        for step in self.steps:
            if isinstance(step, _Attention):
                per_token = 2 * step.kv_heads * step.head_dim * step.keys.element_size()
                total += per_token * sum(self.lengths[:n])
            elif isinstance(step, MambaStep):
                total += step.ring[:, :n].numel() * step.ring.element_size() + step.ssm[:n].numel() * step.ssm.element_size()
            elif isinstance(step, _ReferenceMamba):
                total += step.conv[:n].numel() * step.conv.element_size() + step.ssm[:n].numel() * step.ssm.element_size()
        return total

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (n,): the newest token of the sequences in slots 0..n-1 -> next-token logits (n, V) float32."""
        n = tokens.shape[0]
        if max(self.lengths[:n]) >= self.max_len:
            raise ValueError(f"a sequence would exceed the decoder's {self.max_len} tokens")
        positions = torch.tensor(self.lengths[:n], device=self.device)
        L = max(self.lengths[:n]) + 1
        lengths = self.lengths[:n]
        mask = None if min(lengths) == max(lengths) else (self._span[:L] <= positions[:, None])[:, None, None, :]  # (n, 1, 1, L)
        rows = self._rows[:n]
        h = self.model.model.embeddings(tokens.to(self.device))  # (n, D)
        for block, step in zip(self.model.model.layers, self.steps):
            x = block.norm(h.to(block.norm.weight.dtype))
            if isinstance(step, _Attention):
                h = h + step(x, rows, positions, mask, L)
            elif isinstance(step, (MambaStep, _ReferenceMamba)):
                h = h + step(x, self.t)
            else:
                h = h + step(x)
        for slot in range(n):
            self.lengths[slot] += 1
        self.t += 1
        return self.model.lm_head(self.model.model.norm_f(h)).float()
