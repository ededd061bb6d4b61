"""The benchmarks' scoring: the challenge Dice at the label's size, paired bootstrap intervals and verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerveseg.scripts.bench.scoring import (
    dice_at_label_size,
    interval_sources,
    paired_bootstrap,
    verdict,
)


def test_predictions_are_scored_at_the_original_size_with_empty_on_empty_scoring_one():
    label = np.zeros((40, 60), dtype=bool)
    label[10:30, 20:40] = True
    probability = torch.zeros(20, 30)
    probability[5:15, 10:20] = 0.9  # the label at half size
    empty = torch.zeros(20, 30)
    assert dice_at_label_size([probability, empty, empty], [label, np.zeros((40, 60), bool), label]) == [1.0, 1.0, 0.0]


def test_the_bootstrap_interval_holds_the_mean_and_widens_with_the_noise():
    generator = np.random.default_rng(1)
    quiet = 0.05 + 0.01 * generator.standard_normal((3, 40))
    noisy = 0.05 + 0.20 * generator.standard_normal((3, 40))
    mean, low, high = paired_bootstrap(quiet)
    assert low < mean < high and mean == pytest.approx(quiet.mean())
    assert 0.0 < low and high - low < 0.02
    _, noisy_low, noisy_high = paired_bootstrap(noisy)
    assert noisy_high - noisy_low > 5 * (high - low)
    assert paired_bootstrap(quiet) == paired_bootstrap(quiet)  # seeded: the same rows give the same interval


def test_the_bootstrap_counts_the_spread_between_seeds_not_only_between_images():
    # every image agrees within a seed, but the seeds disagree: the images alone would give a zero-width interval
    seeds_differ = np.repeat([[0.00], [0.05], [0.10]], 30, axis=1)
    mean, low, high = paired_bootstrap(seeds_differ)
    assert mean == pytest.approx(0.05) and low < 0.03 and high > 0.07
    one_seed = paired_bootstrap(seeds_differ[1:2])  # one seed: images only
    assert one_seed == pytest.approx((0.05, 0.05, 0.05))
    with pytest.raises(ValueError, match=r"\[seeds, images\]"):
        paired_bootstrap(np.zeros(5))


def test_the_interval_sources_say_whether_seeds_or_images_widen_it():
    seeds_differ = np.repeat([[0.00], [0.05], [0.10]], 30, axis=1)
    from_seeds = interval_sources(seeds_differ)
    assert from_seeds["images"] == 0.0 and from_seeds["seeds"] > 0.02
    images_differ = np.tile(np.linspace(-0.2, 0.2, 30), (3, 1))
    from_images = interval_sources(images_differ)
    assert from_images["seeds"] == 0.0 and from_images["images"] > 0.02
    _, low, high = paired_bootstrap(seeds_differ + images_differ)
    both = interval_sources(seeds_differ + images_differ)
    assert max(both.values()) < (high - low) / 2 < sum(both.values())


def test_a_win_needs_the_margin_and_an_interval_above_zero():
    assert verdict(0.03, 0.01, 0.05) == "win"
    assert verdict(-0.03, -0.05, -0.01) == "loss"
    assert verdict(0.01, 0.005, 0.015) == "tie"  # beyond the noise, within the margin
    assert verdict(0.05, -0.01, 0.11) == "tie"  # beyond the margin, not beyond the noise
    assert verdict(0.02, 0.0, 0.04) == "tie"  # the interval must lie above 0, not touch it
