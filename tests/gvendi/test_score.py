"""G-Vendi's arithmetic (factory.gvendi): the score against the Vendi Score package and a numpy reference,
its limits, the Rademacher projection, and per-example gradients on completion tokens only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from factory.gvendi import (
    Example,
    ProxySettings,
    conversation_example,
    gvendi_score,
    load_proxy,
    per_example_gradients,
    rademacher_project,
    text_example,
)
from factory.model.byte_level import byte_ids


def reference_score(x: np.ndarray) -> float:
    """The definition, written out: exp(entropy of the normalised eigenvalues of G^T G / n), rows L2-normalised."""
    g = x / np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.clip(np.linalg.eigvalsh(g.T @ g / len(g)), 0, None)
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 1e-15]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("n,d", [(7, 5), (5, 12), (40, 16)])  # more rows than dimensions, and fewer
def test_score_equals_the_vendi_package_and_the_definition(n, d):
    vendi = pytest.importorskip("vendi_score.vendi")
    x = np.random.default_rng(n * d).normal(size=(n, d)) * np.random.default_rng(1).uniform(0.1, 10, size=(n, 1))
    ours = gvendi_score(torch.tensor(x))
    assert ours == pytest.approx(reference_score(x), rel=1e-9)
    assert ours == pytest.approx(float(vendi.score_dual(x)), rel=1e-9)
    assert ours == pytest.approx(float(vendi.score_X(x)), rel=1e-9)  # the n x n kernel form
    assert 1.0 <= ours <= min(n, d)


def test_limits_identical_is_one_orthogonal_is_n():
    v = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    assert gvendi_score(v.repeat(10, 1) * torch.arange(1, 11).unsqueeze(1)) == pytest.approx(1.0, abs=1e-9)  # norms do not count
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    assert gvendi_score(q[:12]) == pytest.approx(12.0, rel=1e-9)
    assert gvendi_score(torch.eye(6)) == pytest.approx(6.0, rel=1e-12)
    # two orthogonal directions, 5 copies each: an effective number of 2
    assert gvendi_score(torch.cat([q[:1].repeat(5, 1), q[1:2].repeat(5, 1)])) == pytest.approx(2.0, rel=1e-9)
    # 9 copies of one direction and 1 of another: between 1 and 2, as exp of the entropy of (0.9, 0.1)
    assert gvendi_score(torch.cat([q[:1].repeat(9, 1), q[1:2]])) == pytest.approx(np.exp(-(0.9 * np.log(0.9) + 0.1 * np.log(0.1))))


def test_bad_features_are_refused():
    with pytest.raises(ValueError, match="row 1 is zero"):
        gvendi_score(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        gvendi_score(torch.zeros((0, 4)))


def test_rademacher_projection_is_seeded_blockwise_and_keeps_geometry():
    params, dim = 10_000, 256  # 10k parameters: three row blocks of the projection
    g = torch.randn(20, params, generator=torch.Generator().manual_seed(2))
    projected = rademacher_project(g, dim, seed=3)
    assert torch.equal(projected, rademacher_project(g, dim, seed=3))
    assert torch.allclose(rademacher_project(g[5:6], dim, seed=3), projected[5:6], atol=1e-4)  # independent of n
    assert not torch.allclose(rademacher_project(g, dim, seed=4), projected)
    # a unit vector lands on one row of R / sqrt(dim): every entry is +-1/sqrt(dim), signs about half and half
    row = rademacher_project(torch.eye(params)[[9_000]], dim, seed=3)[0]
    assert torch.allclose(row.abs(), torch.full((dim,), dim**-0.5))
    assert 0.35 < float((row > 0).float().mean()) < 0.65
    # Johnson-Lindenstrauss: cosines survive within the projection's noise (about 1/sqrt(dim))
    cos = F.normalize(g, dim=1) @ F.normalize(g, dim=1).T
    cos_p = F.normalize(projected, dim=1) @ F.normalize(projected, dim=1).T
    assert float((cos - cos_p).abs().max()) < 4 * dim**-0.5


def test_text_and_conversation_windows():
    assert text_example("héllo", byte_ids, seq_len=8) == Example(tuple("héllo".encode()), (1,) * 6)
    assert text_example("x" * 50, byte_ids, seq_len=8).ids == (120,) * 9  # the first seq_len + 1 tokens
    assert text_example("x", byte_ids, seq_len=8) is None
    messages = [{"role": "system", "content": "detailed thinking off"}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]
    ex = conversation_example(messages, byte_ids, seq_len=512)
    rendered = bytes(ex.ids).decode()
    completion = "".join(chr(i) for i, m in zip(ex.ids, ex.mask) if m)
    assert rendered.endswith("<|im_start|>assistant\n4<|im_end|>\n") and completion == "4<|im_end|>\n"
    assert conversation_example(messages[:2], byte_ids, seq_len=512) is None  # no completion, nothing to measure
    # a long prompt is cut so that the completion is inside the window
    long = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "the answer"}]
    ex = conversation_example(long, byte_ids, seq_len=64)
    assert len(ex.ids) == 65 and "the answer" in "".join(chr(i) for i, m in zip(ex.ids, ex.mask) if m)


def test_per_example_gradients_are_the_completion_loss_gradients():
    proxy = load_proxy(ProxySettings(seq_len=32))
    model = proxy.model
    prompt, answer = byte_ids("Question: what is two plus two? "), byte_ids("Four.")
    examples = [Example(tuple(prompt + answer), (0,) * len(prompt) + (1,) * len(answer)),
                text_example("A different, plain document of some length.", byte_ids, 32)]
    grads = per_example_gradients(model, examples, batch_size=2)  # both in one vmap'd, padded batch
    params = [p for p in model.parameters() if p.requires_grad]
    assert grads.shape == (2, sum(p.numel() for p in params))
    for row, example in enumerate(examples):
        ids, mask = torch.tensor(example.ids), torch.tensor(example.mask, dtype=torch.float32)
        model.zero_grad(set_to_none=True)
        losses = F.cross_entropy(model(input_ids=ids[None, :-1], use_cache=False).logits[0], ids[1:], reduction="none")
        ((losses * mask[1:]).sum() / mask[1:].sum()).backward()
        expected = torch.cat([p.grad.reshape(-1) for p in params])
        assert torch.allclose(grads[row], expected, rtol=1e-3, atol=1e-6)
    model.zero_grad(set_to_none=True)
    # prompt tokens carry no loss: a different prompt changes the gradient only through the context it gives
    first = per_example_gradients(model, examples[:1])[0]
    assert torch.allclose(first, grads[0], rtol=1e-3, atol=1e-6)
    assert not torch.allclose(first, per_example_gradients(model, [Example(examples[0].ids, (1,) * len(examples[0].ids))])[0])
