"""The fast Mamba-2 decode step (its convolution ring, in-place state) against the pure-PyTorch reference step."""

from __future__ import annotations

import torch

from factory.generate.mamba_step import MambaStep, MambaWeights, mamba2_step_reference
from factory.model.build import build_model
from factory.model.presets import tiny


def test_fast_step_equals_the_reference_over_more_steps_than_the_ring():
    torch.manual_seed(0)
    model = build_model(tiny().model_copy(update={"mamba_groups": 2}), 64).eval()
    w = MambaWeights.of(model.model.layers[0].mixer)
    C, K = w.conv.shape
    generator = torch.Generator().manual_seed(1)
    conv = torch.randn(3, C, K, generator=generator)  # (B, C, K) oldest first
    ssm = torch.randn(3, w.heads, w.head_dim, w.state, generator=generator)  # (B, H, P, N)
    step = MambaStep(w, slots=4, dtype=torch.float32, device=torch.device("cpu"))
    start = 5  # a clock that is not a multiple of K: the ring's rows are rotated
    for slot in range(3):
        step.load(slot + 1, conv[slot], ssm[slot], start)
    step.move(3, 0)  # slot 3's sequence moves into slot 0: slots 0..2 then hold sequences 2, 0, 1
    order = [2, 0, 1]
    conv, ssm = conv[order], ssm[order]
    with torch.no_grad():
        for t in range(start, start + 2 * K + 1):
            x = torch.randn(3, w.in_proj.shape[1], generator=generator)
            expected, conv, ssm = mamba2_step_reference(x, conv, ssm, w)
            torch.testing.assert_close(step(x, t), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.ssm[:3], ssm, rtol=1e-5, atol=1e-5)
