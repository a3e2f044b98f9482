"""Random Hadamard transform: orthogonal, seeded, and transparent to the wgrad product."""

import pytest
import torch

from factory.precision.hadamard import apply_hadamard, hadamard_matrix, random_hadamard_matrix


def test_random_hadamard_is_orthogonal_with_entries_a_quarter():
    h = random_hadamard_matrix(16, seed=0)
    torch.testing.assert_close(h @ h.t(), torch.eye(16), rtol=0, atol=1e-6)
    assert set(h.abs().flatten().tolist()) == {0.25}


def test_seed_picks_the_signs():
    assert torch.equal(random_hadamard_matrix(16, seed=5), random_hadamard_matrix(16, seed=5))
    assert not torch.equal(random_hadamard_matrix(16, seed=5), random_hadamard_matrix(16, seed=6))
    # the signs flip whole columns of the plain Hadamard matrix
    ratio = random_hadamard_matrix(16, seed=5) * 4 / hadamard_matrix(16)
    assert (ratio == ratio[0]).all() and set(ratio[0].tolist()) <= {-1.0, 1.0}


def test_wgrad_product_without_quantization_is_unchanged():
    gen = torch.Generator().manual_seed(0)
    g, x = torch.randn(37, 24, generator=gen), torch.randn(37, 20, generator=gen)  # [M, N], [M, K], M not /16
    h = random_hadamard_matrix(16, seed=3)
    gt, xt = apply_hadamard(g.t(), h), apply_hadamard(x.t(), h)  # [N, 48], [K, 48]
    torch.testing.assert_close(gt @ xt.t(), g.t() @ x, rtol=1e-5, atol=1e-5)


def test_rht_spreads_an_outlier_over_its_group():
    x = torch.zeros(1, 16)
    x[0, 3] = 8.0
    assert apply_hadamard(x, random_hadamard_matrix(16)).abs().flatten().tolist() == [2.0] * 16


def test_rht_lowers_the_crest_factor_of_spiky_blocks():
    # the reason for the RHT: a block's max over its RMS falls, so its E4M3 scale fits the bulk better
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 16, generator=gen) + 40 * (torch.rand(256, 16, generator=gen) < 0.02).float()
    y = apply_hadamard(x, random_hadamard_matrix(16))

    def crest(t):
        return (t.abs().amax(-1) / t.pow(2).mean(-1).sqrt()).mean().item()

    assert crest(y) < 0.8 * crest(x)


def test_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2"):
        hadamard_matrix(12)
