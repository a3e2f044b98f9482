import numpy as np
import pytest

from factory.train.sampler import SeededSampler
from factory.train.schedule import wsd_lr


def test_wsd_exact_values():
    kw = dict(peak_lr=1.0, total_steps=10, warmup_steps=2, decay_fraction=0.4, min_lr_ratio=0.1)
    got = [wsd_lr(s, **kw) for s in range(10)]
    # warmup 2 steps, stable steps 2..5, decay over the last 4 steps down to 0.1 at the final step
    want = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0 - 0.9 * 0.25, 1.0 - 0.9 * 0.5, 1.0 - 0.9 * 0.75, 0.1]
    assert got == pytest.approx(want, abs=1e-12)


def test_wsd_without_warmup_or_decay_is_constant():
    kw = dict(peak_lr=3e-4, total_steps=5, warmup_steps=0, decay_fraction=0.0, min_lr_ratio=0.0)
    assert [wsd_lr(s, **kw) for s in range(5)] == [3e-4] * 5


def test_sampler_is_a_pure_function_of_seed_epoch_position():
    a, b = SeededSampler(10, seed=3), SeededSampler(10, seed=3)
    first_epoch = a.indices(0, 10)
    assert sorted(first_epoch) == list(range(10))  # a permutation per epoch
    # random access in any order gives the same draws (resume from any position)
    assert [b.index(p) for p in reversed(range(25))] == list(reversed(a.indices(0, 25)))
    assert a.indices(10, 10) != first_epoch  # a new order each epoch
    assert SeededSampler(10, seed=4).indices(0, 10) != first_epoch
    np.testing.assert_array_equal(a.permutation(0), np.random.default_rng([3, 0]).permutation(10))
