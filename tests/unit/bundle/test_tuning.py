"""Choosing post-processing settings on validation data."""

from __future__ import annotations

import numpy as np

from nerveseg.bundle.tuning import PostprocessingChoice, choice_table, choose_postprocessing


def test_postprocessing_search_finds_threshold_and_minimum_area():
    label_nerve = np.zeros((10, 10))
    label_nerve[2:8, 2:8] = 1
    probability_nerve = label_nerve * 0.45  # found, but below 0.5
    probability_speck = np.zeros((10, 10))
    probability_speck[0, :3] = 0.9  # a 3-pixel false positive on an empty frame
    best, default = choose_postprocessing(
        [probability_nerve, probability_speck], [label_nerve, np.zeros((10, 10))], thresholds=[0.3, 0.5], min_areas=[5]
    )
    assert (default.mean_dice, default.threshold, default.min_area) == (0.0, 0.5, 0)
    assert (best.threshold, best.min_area, best.mean_dice) == (0.3, 5, 1.0)


def test_gate_enters_the_search_only_with_presence():
    speck = np.zeros((4, 4))
    speck[0, 0] = 0.9
    best, _ = choose_postprocessing([speck], [np.zeros((4, 4))], presence=[0.2], min_areas=[0], gate_thresholds=[0.3])
    assert best.gate_threshold == 0.3 and best.mean_dice == 1.0
    best, _ = choose_postprocessing([speck], [np.zeros((4, 4))], min_areas=[0], gate_thresholds=[0.3])
    assert best.gate_threshold == 0.0 and best.mean_dice == 0.0


def test_choice_table_puts_default_and_tuned_side_by_side():
    table = choice_table(PostprocessingChoice(0.3, 250, 0.4, 0.8125), PostprocessingChoice(0.5, 0, 0.0, 0.5))
    header, default, tuned = table.splitlines()
    assert header.split() == ["setting", "threshold", "min_area", "gate", "mean", "Dice"]
    assert default.split() == ["default", "0.50", "0", "0.00", "0.5000"]
    assert tuned.split() == ["tuned", "0.30", "250", "0.40", "0.8125"]
