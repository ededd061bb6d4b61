"""The league's scoring and verdicts: the challenge Dice at the original size, and a win only beyond the noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerveseg.scripts.bench.asme_timing import mean_dice_at_label_size
from nerveseg.scripts.bench.league import SYSTEMS, league, league_markdown, verdict


def test_a_win_needs_the_margin_and_more_than_two_standard_errors():
    assert verdict([0.70, 0.71, 0.72], [0.60, 0.61, 0.62]) == "win"
    assert verdict([0.60, 0.61, 0.62], [0.70, 0.71, 0.72]) == "loss"
    assert verdict([0.70, 0.71, 0.72], [0.695, 0.705, 0.715]) == "tie"  # within the margin
    assert verdict([0.75, 0.60, 0.78], [0.66, 0.66, 0.66]) == "tie"  # beyond the margin, not beyond the noise
    # t = 0.05 / 0.0330 = 1.51 with 2 degrees of freedom: a tie, though 0.05 is 1.5 standard errors
    assert verdict([0.72, 0.66, 0.75], [0.66, 0.66, 0.66]) == "tie"
    assert verdict([0.70, 0.71, 0.72], [0.60]) == "win"  # one nnU-Net run borrows the default's spread
    assert verdict([0.9], [0.1]) == "tie"  # one run against one: the spread is unknown
    assert verdict([0.7, 0.7], [0.6, 0.6]) == "win"  # no spread at all: the margin decides


def test_predictions_are_scored_at_the_original_size_with_empty_on_empty_scoring_one():
    label = np.zeros((40, 60), dtype=bool)
    label[10:30, 20:40] = True
    probability = torch.zeros(20, 30)
    probability[5:15, 10:20] = 0.9  # the label at half size
    empty = torch.zeros(20, 30)
    assert mean_dice_at_label_size([probability, empty], [label, np.zeros((40, 60), bool)]) == pytest.approx(1.0)
    assert mean_dice_at_label_size([empty], [label]) == 0.0


def test_the_markdown_gives_each_system_its_verdict_and_the_quick_flag():
    rows = [
        {"dataset": "usgra_seg", "system": system, "seed": seed, "test_dice": dice, "train_seconds": 10.0}
        for system, values in (("default", (0.70, 0.72)), ("smp Unet-b1", (0.60, 0.61)))
        for seed, dice in enumerate(values)
    ]
    for row in rows[:2]:
        row.update(val_best=0.8, val_last=0.75)
    summary = {
        "default": {"mean": 0.71, "sd": 0.014, "n": 2, "train_seconds": 10.0},
        "smp Unet-b1": {"mean": 0.605, "sd": 0.007, "n": 2, "train_seconds": 10.0, "verdict": "win"},
        "nnU-Net v2 2d": {"mean": 0.5, "sd": None, "n": 1, "train_seconds": 20.0, "verdict": "win"},
    }
    result = {
        "machine": {"summary": "a test machine"},
        "quick": True,
        "settings": {"usgra_seg": {"training": 8, "validation": 4, "test": 4, "image_size": [64, 64], "num_epochs": 2}},
        "rows": rows,
        "summary": {"usgra_seg": summary},
    }
    text = league_markdown(result)
    assert "QUICK smoke run: not a result" in text
    assert "| smp Unet-b1 | 0.6050 ± 0.0070 | 2 | 10 | win |" in text
    assert "| nnU-Net v2 2d | 0.5000 ± n/a | 1 | 20 | win |" in text
    assert "best epoch - last epoch per seed: 0.050, 0.050" in text
    assert SYSTEMS[0] == "default" and len(SYSTEMS) == 7


def test_unknown_data_sets_and_a_missing_data_root_are_named(tmp_path):
    with pytest.raises(SystemExit, match=r"Unknown datasets \['cells'\]; choose from \['usgra_seg', 'dsb2018'\]"):
        league(data_root=str(tmp_path), datasets=["cells"])
    with pytest.raises(SystemExit, match=r"usgra_seg/images not found; pass --data_root"):
        league(data_root=str(tmp_path), datasets=["usgra_seg"])
