"""bench live-recipe's refusals and its comparison of the recipes, on made-up rows (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nerveseg.scripts.bench.live_recipe import (
    BASELINE,
    CANDIDATE,
    _comparison,
    _previous_result,
    live_recipe,
    live_recipe_markdown,
)
from nerveseg.utils.errors import UserInputError


def rows(num_seeds: int, shift: float) -> list[dict]:
    """Each recipe's rows: the candidate's Dice is the baseline's plus ``shift`` plus noise per seed and image."""
    generator = np.random.default_rng(0)
    out = []
    for seed in range(num_seeds):
        base = {split: list(generator.uniform(0.2, 0.8, 30)) for split in ("validation", "test")}
        other = {split: list(np.add(base[split], shift + 0.05 * generator.standard_normal(30))) for split in base}
        out += [
            {"recipe": BASELINE, "seed": seed, "overrides": {}, "configs": "a", "dice": base, "train_seconds": 10.0},
            {"recipe": CANDIDATE, "seed": seed, "overrides": {}, "configs": "b", "dice": other, "train_seconds": 1.0},
        ]
    return out


def test_the_comparison_pairs_by_seed_and_image_and_says_what_narrows_it():
    comparison = _comparison(rows(3, -0.004), tolerance=0.01)
    change = comparison[CANDIDATE]["validation"]
    assert comparison[CANDIDATE]["seeds"] == [0, 1, 2] and change["num_images"] == 30
    assert change["low"] < -0.004 < change["high"] and change["within_tolerance"] == (change["low"] >= -0.01)
    assert 0 < change["half_width_from"]["images"] and 0 < change["half_width_from"]["seeds"]
    markdown = live_recipe_markdown(
        {
            "machine": {"summary": "a test"},
            "settings": {"num_epochs": 8},
            "tolerance": 0.01,
            "rows": rows(3, -0.004),
            "comparison": comparison,
        }
    )
    assert f"| {CANDIDATE} | validation | {(change['high'] - change['low']) / 2:.4f} |" in markdown
    one_seed = _comparison(rows(1, -0.004), tolerance=0.01)[CANDIDATE]["test"]
    assert one_seed["half_width_from"]["seeds"] == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recipes": ["no such recipe"]}, r"Unknown recipes \['no such recipe'\]; choose from"),
        ({"tolerance": 0}, r"--tolerance must be in \(0, 1\), the largest Dice loss allowed \(e.g. 0.01\), got 0"),
        ({"data_root": "/no/such/folder"}, r"usgra_seg/images not found; pass --data_root"),
    ],
)
def test_bad_options_are_refused_before_any_training(tmp_path, options, message):
    with pytest.raises(UserInputError, match=message):
        live_recipe(out=str(tmp_path), **options)


def test_earlier_runs_resume_at_any_tolerance_but_not_at_another_epoch_count(tmp_path):
    path = tmp_path / "live_recipe.json"
    earlier = rows(1, 0.0)
    path.write_text(json.dumps({"settings": {"num_epochs": 8, "tolerance": 0.01}, "rows": earlier}))  # as 0.15.0 wrote
    assert _previous_result(path, {"num_epochs": 8}, 0.02)["rows"] == earlier
    with pytest.raises(UserInputError, match=r"holds runs with settings \{'num_epochs': 8\}, not \{'num_epochs': 2\}"):
        _previous_result(path, {"num_epochs": 2}, 0.01)
    path.write_text(json.dumps({"settings": [8], "rows": []}))
    with pytest.raises(UserInputError, match="is not a live-recipe result"):
        _previous_result(path, {"num_epochs": 8}, 0.01)


@pytest.mark.parametrize(
    ("bad_rows", "message"),
    [
        ({"default": []}, r"rows is not a list of runs; move the file away"),
        ([*rows(1, 0.0), {"recipe": BASELINE, "seed": 3}], r"row 2 is not a run \(it needs \['recipe', 'seed', "),
        ([{**rows(1, 0.0)[0], "dice": {"validation": [0.5]}}], r"row 0 is not a run .* per split in \['validation', "),
    ],
)
def test_a_results_file_whose_rows_are_not_runs_is_refused_with_the_row(tmp_path, bad_rows, message):
    path = tmp_path / "live_recipe.json"
    path.write_text(json.dumps({"settings": {"num_epochs": 8}, "rows": bad_rows}))
    with pytest.raises(UserInputError, match=message):
        _previous_result(path, {"num_epochs": 8}, 0.01)
