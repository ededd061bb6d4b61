"""Choosing the presence-gate threshold from an evaluation report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nerveseg.bundle.tuning import choose_gate_threshold, gated_dice, read_report, write_override


def test_gated_dice_scores_emptied_masks_against_their_labels():
    presence = np.array([0.1, 0.2, 0.9])
    dice = np.array([0.0, 0.3, 0.8])
    empty = np.array([True, False, False])
    assert gated_dice(presence, dice, empty, 0.15).tolist() == [1.0, 0.3, 0.8]
    assert gated_dice(presence, dice, empty, 0.5).tolist() == [1.0, 0.0, 0.8]


def test_threshold_separates_false_positives_from_true_ones():
    # Two empty frames with false-positive masks (low presence) and two nerves found (high presence).
    choice = choose_gate_threshold([0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 0.8, 0.6], [0, 0, 3000, 4000])
    assert choice.threshold == pytest.approx(0.45)  # the midpoint between 0.2 and 0.7
    assert choice.mean_dice == pytest.approx(0.85) and choice.ungated_mean_dice == pytest.approx(0.35)
    assert (choice.gated_images, choice.gated_positives) == (2, 0)


def test_no_gate_when_gating_would_only_cost():
    choice = choose_gate_threshold([0.1, 0.9], [0.7, 0.9], [2000, 3000])
    assert choice.threshold == 0.0 and choice.gated_images == 0 and choice.mean_dice == pytest.approx(0.8)


def test_gating_everything_is_a_candidate():
    choice = choose_gate_threshold([0.6, 0.8], [0.0, 0.0], [0, 0])
    assert choice.threshold > 0.8 and choice.mean_dice == 1.0 and choice.gated_images == 2


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one presence, dice and label_area per image, got 2, 1, 2"):
        choose_gate_threshold([0.1, 0.2], [0.5], [0, 1])


def test_read_report_and_write_override(tmp_path):
    report = tmp_path / "metrics.csv"
    with open(report, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["id", "dice", "pred_area", "label_area", "presence"], ["1_1", "0.5", "10", "12", "0.8"]])
    values = read_report(report, column="presence")
    assert values["presence"].tolist() == [0.8] and values["label_area"].tolist() == [12]
    with pytest.raises(ValueError, match="lacks the column\\(s\\) gate; it has id, dice"):
        read_report(report, column="gate")
    with pytest.raises(ValueError, match="does not exist; run the evaluating workflow first"):
        read_report(tmp_path / "absent.csv", column="presence")
    path = write_override(tmp_path / "out" / "gate.json", {"network_def#threshold": 0.25})
    assert json.loads(path.read_text()) == {"network_def#threshold": 0.25}
    assert [p.name for p in path.parent.iterdir()] == ["gate.json"]
