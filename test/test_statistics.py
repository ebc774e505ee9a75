"""Paired bootstrap intervals and block means, against values that can be worked out by hand."""

import numpy as np
import pytest
from depth_node_training.evaluation.statistics import block_means, paired_bootstrap


def test_a_constant_difference_has_a_zero_width_interval():
    b = np.random.default_rng(0).uniform(0.1, 0.2, (3, 50))
    result = paired_bootstrap(b + 0.01, b)
    assert result["mean"] == pytest.approx(0.01)
    assert result["low"] == pytest.approx(0.01) and result["high"] == pytest.approx(0.01)
    assert result["excludes_zero"] and result["seeds"] == 3 and result["frames"] == 50


def test_noise_around_zero_is_not_called_a_difference_but_a_real_shift_is():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.1, 0.2, (3, 100))
    noise = rng.normal(0, 0.01, (3, 100))
    tie = paired_bootstrap(b + noise - noise.mean(), b)
    assert tie["low"] < 0 < tie["high"] and not tie["excludes_zero"]
    better = paired_bootstrap(b + noise - noise.mean() - 0.01, b)
    assert better["high"] < 0 and better["excludes_zero"]


def test_seed_spread_widens_the_interval():
    """Two seeds that disagree in sign: resampling seeds must show that the sign is not settled."""
    b = np.zeros((2, 40))
    a = np.stack([np.full(40, 0.02), np.full(40, -0.01)])
    result = paired_bootstrap(a, b)
    assert result["mean"] == pytest.approx(0.005)
    assert result["low"] == pytest.approx(-0.01) and result["high"] == pytest.approx(0.02)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="equal shape"):
        paired_bootstrap(np.zeros((2, 5)), np.zeros((2, 4)))


def test_block_means():
    assert block_means(np.arange(10), size=4) == [1.5, 5.5, 8.5]


def test_t_interval_over_seed_means():
    from depth_node_training.evaluation.statistics import paired_t_interval, t_quantile

    assert [round(t_quantile(0.975, df), 3) for df in (1, 2, 5, 30)] == [12.706, 4.303, 2.571, 2.042]  # t tables
    result = paired_t_interval([0.132, 0.128, 0.152], [0.126, 0.139, 0.143])
    diff = np.array([0.006, -0.011, 0.009])
    half = 4.3027 * diff.std(ddof=1) / np.sqrt(3)
    assert result["mean"] == pytest.approx(diff.mean()) and result["seeds"] == 3
    assert (result["low"], result["high"]) == pytest.approx((diff.mean() - half, diff.mean() + half), abs=1e-5)
    assert not result["excludes_zero"] and paired_t_interval([0.2, 0.21, 0.19], [0.1, 0.1, 0.1])["excludes_zero"]
    with pytest.raises(ValueError, match="two paired seeds"):
        paired_t_interval([0.1], [0.2])
