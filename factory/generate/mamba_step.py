"""The Mamba-2 mixer's one-token decode step: a pure-PyTorch reference, the fast CPU step and, on a GPU with
mamba-ssm installed, its `selective_state_update` kernel.

A decode step reads the layer's fixed-size state (the last K inputs of the causal convolution and the SSM state
h) and one new token per sequence; its cost does not depend on how many tokens came before, which is the
hybrid's inference advantage over attention. `mamba2_step_reference` is the definition (one screen, the
arithmetic of transformers' `NemotronHMamba2Mixer` on a cached single token); `MambaStep` is what the decoder
runs: the convolution window kept as a ring (no roll, no concatenation), the state updated in place, the group
broadcast of B and C done by views instead of copies. tests/generate/test_mamba_step.py checks the fast step against
the reference; tests/generate/test_decode.py checks both, through the decoder, against transformers' model.

Shapes: B sequences, D model width, H heads of width P (inner width I = H * P), G groups of B/C of size N,
convolution width K over C = I + 2 * G * N channels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["MambaStep", "MambaWeights", "mamba2_step_reference", "selective_state_update_kernel"]


class MambaWeights(NamedTuple):
    """One `NemotronHMamba2Mixer`'s parameters, by reference (a trained policy's current values)."""

    in_proj: torch.Tensor  # (I + C + H, D)
    in_bias: torch.Tensor | None  # (I + C + H,)
    conv: torch.Tensor  # (C, K) depthwise taps, oldest input first
    conv_bias: torch.Tensor | None  # (C,)
    dt_bias: torch.Tensor  # (H,)
    A_log: torch.Tensor  # (H,)  A = -exp(A_log)
    D: torch.Tensor  # (H,)
    norm: torch.Tensor  # (I,) gated RMSNorm weight, normalised per group of I / G channels
    eps: float
    out_proj: torch.Tensor  # (D, I)
    out_bias: torch.Tensor | None  # (D,)
    heads: int  # H
    head_dim: int  # P
    groups: int  # G
    state: int  # N

    @classmethod
    def of(cls, mixer) -> MambaWeights:
        """The weights of a transformers `NemotronHMamba2Mixer`."""
        return cls(mixer.in_proj.weight, mixer.in_proj.bias, mixer.conv1d.weight.squeeze(1), mixer.conv1d.bias,
                   mixer.dt_bias, mixer.A_log, mixer.D, mixer.norm.weight, mixer.norm.variance_epsilon,
                   mixer.out_proj.weight, mixer.out_proj.bias, mixer.num_heads, mixer.head_dim, mixer.n_groups,
                   mixer.ssm_state_size)


def mamba2_step_reference(x: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor, w: MambaWeights
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One token through a Mamba-2 mixer. x: (B, D) the normed input; conv_state: (B, C, K) the last K
    convolution inputs, oldest first, in the model's dtype; ssm_state: (B, H, P, N) float32, as transformers' cache
    keeps it. Returns (y (B, D), conv_state, ssm_state), the states new tensors (the inputs are not modified).
    Rounding follows transformers' step: in a BF16 model the convolution accumulates in float32 and rounds once,
    dt * B * x is BF16, the state update float32, the read-out BF16, the gated norm float32."""
    H, P, G, N = w.heads, w.head_dim, w.groups, w.state
    I, batch, dtype = H * P, x.shape[0], x.dtype
    z, xBC, dt = F.linear(x, w.in_proj, w.in_bias).split([I, w.conv.shape[0], H], dim=-1)  # (B, I), (B, C), (B, H)
    window = torch.cat([conv_state[:, :, 1:], xBC[:, :, None]], dim=-1)  # (B, C, K)
    xBC = F.silu(F.conv1d(window, w.conv[:, None, :], w.conv_bias, groups=window.shape[1])[..., 0])  # (B, C)
    xs, Bm, Cm = xBC.split([I, G * N, G * N], dim=-1)
    xs = xs.view(batch, H, P)
    Bm = Bm.view(batch, G, 1, N).expand(batch, G, H // G, N).reshape(batch, H, N)  # each head reads its group's B
    Cm = Cm.view(batch, G, 1, N).expand(batch, G, H // G, N).reshape(batch, H, N)
    dt = F.softplus(dt + w.dt_bias)  # (B, H)
    dA = torch.exp(dt.float() * -torch.exp(w.A_log.float()))  # (B, H): the state's decay this step
    dBx = (dt[:, :, None, None] * Bm[:, :, None, :]) * xs[:, :, :, None]  # (B, H, P, N) in the model's dtype
    state = ssm_state * dA[:, :, None, None] + dBx  # (B, H, P, N) float32
    y = (state.to(dtype) @ Cm[:, :, :, None]).squeeze(-1) + xs * w.D[:, None]  # (B, H, P)
    y = y.reshape(batch, I).float() * F.silu(z.float())  # gated RMSNorm, per group of I / G channels
    y = y.view(batch, G, I // G)
    y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + w.eps)).view(batch, I)
    return F.linear(w.norm * y.to(dtype), w.out_proj, w.out_bias), window, state


def selective_state_update_kernel():
    """mamba-ssm's fused `selective_state_update` (Triton, CUDA only), or None where it does not import."""
    try:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    except (ImportError, OSError, RuntimeError):  # not installed, or built without a GPU / Triton: the PyTorch step runs
        return None
    return selective_state_update


class MambaStep:
    """The decoder's step for one Mamba-2 layer, on preallocated states for `slots` sequences.

    The convolution window is a ring of K rows (K, slots, C): at step t the new input goes to row t % K and the
    taps are read through `taps[t % K]`, the weights permuted to the ring's order, so nothing shifts. The SSM
    state (slots, H, P, N) is updated in place. On CUDA with mamba-ssm installed (`kernel`), the state update and
    read-out are its fused kernel, as transformers and vLLM call it.
    """

    def __init__(self, w: MambaWeights, slots: int, dtype: torch.dtype, device: torch.device, kernel=None) -> None:
        self.w, self.kernel = w, kernel
        C, K = w.conv.shape
        self.K = K
        self.ring = torch.zeros(K, slots, C, dtype=dtype, device=device)  # (K, slots, C)
        # float32 whatever the model's dtype, as transformers' cache keeps it (a BF16 state drifts over many steps)
        self.ssm = torch.zeros(slots, w.heads, w.head_dim, w.state, dtype=torch.float32, device=device)  # (slots, H, P, N)
        # taps[r][j] multiplies ring row j at a step writing row r: ring row j then holds window slot (j - r - 1) % K
        # (0 = oldest), so its tap is conv[:, (j - r - 1) % K]. Float32: the convolution accumulates in float32 and
        # rounds once, as transformers' (a copy of the weights: a policy trained between calls re-builds the decoder).
        self.taps = torch.stack([torch.stack([w.conv[:, (j - r - 1) % K] for j in range(K)])
                                 for r in range(K)])[:, :, None, :].float()  # (K, K, 1, C)
        self.conv_bias = None if w.conv_bias is None else w.conv_bias.float()
        self.A = -torch.exp(w.A_log.float())  # (H,)
        if kernel is not None:  # the kernel's per-(head, channel) layout, as transformers passes it
            P, N = w.head_dim, w.state
            self.A_hpn = self.A[:, None, None].expand(-1, P, N)
            self.D_hp = w.D[:, None].expand(-1, P)
            self.dt_bias_hp = w.dt_bias[:, None].expand(-1, P)

    def load(self, slot: int, conv_state: torch.Tensor, ssm_state: torch.Tensor, t: int) -> None:
        """Place one sequence's prefill states in `slot` before step `t`: conv_state (C, K) oldest first,
        ssm_state (H, P, N). Window slot k goes to ring row (t + k) % K (row t % K is overwritten at step t)."""
        for k in range(self.K):
            self.ring[(t + k) % self.K, slot].copy_(conv_state[:, k])
        self.ssm[slot].copy_(ssm_state)

    def move(self, src: int, dst: int) -> None:
        """Copy sequence `src`'s states into slot `dst` (compacting the batch)."""
        self.ring[:, dst].copy_(self.ring[:, src])
        self.ssm[dst].copy_(self.ssm[src])

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """x: (n, D) the normed input of the first n slots at step t -> (n, D); their states advanced."""
        w, n = self.w, x.shape[0]
        H, P, G, N = w.heads, w.head_dim, w.groups, w.state
        I = H * P
        z, xBC, dt = F.linear(x, w.in_proj, w.in_bias).split([I, self.ring.shape[2], H], dim=-1)
        r = t % self.K
        self.ring[r, :n].copy_(xBC)
        xBC = (self.ring[:, :n].float() * self.taps[r]).sum(0)  # (n, C) float32
        xBC = F.silu((xBC + self.conv_bias if self.conv_bias is not None else xBC).to(x.dtype))
        xs, Bm, Cm = xBC.split([I, G * N, G * N], dim=-1)
        state = self.ssm[:n]
        if self.kernel is not None:
            y = self.kernel(state, xs.reshape(n, H, P), dt[:, :, None].expand(-1, -1, P), self.A_hpn,
                            Bm.reshape(n, G, N), Cm.reshape(n, G, N), self.D_hp, z=None, dt_bias=self.dt_bias_hp,
                            dt_softplus=True)  # (n, H, P), state updated in place
        else:
            xs = xs.reshape(n, G, H // G, P)
            dt = F.softplus(dt + w.dt_bias).view(n, G, H // G)  # (n, G, H/G)
            dA = torch.exp(dt.float() * self.A.view(G, H // G))  # float32
            hs = state.view(n, G, H // G, P, N)
            # state * dA + (dt * B) * x, rounded as the reference rounds it
            hs.mul_(dA[..., None, None]).add_((dt[..., None, None] * Bm.view(n, G, 1, 1, N)) * xs[..., None])
            y = (hs.to(x.dtype) @ Cm.view(n, G, 1, N, 1)).squeeze(-1) + xs * w.D.view(G, H // G, 1)  # (n, G, H/G, P)
        y = y.reshape(n, I).float() * F.silu(z.float())
        y = y.view(n, G, I // G)
        y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + w.eps)).view(n, I)
        return F.linear(w.norm * y.to(x.dtype), w.out_proj, w.out_bias)
