"""The league's ablations: each one changes what it names in the shipped configs, and its table reads the change."""

from __future__ import annotations

import pytest

from conftest import BUNDLE_ROOT
from nerveseg.scripts.bench import run_builder
from nerveseg.scripts.bench.league_ablations import ABLATIONS, ablations, ablations_markdown


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_names_config_files_and_ids_that_exist(name):
    files, overrides = ABLATIONS[name]
    parser = run_builder.read_config(run_builder.config_files(BUNDLE_ROOT, "configs/train.json", *files))
    for key, value in overrides.items():
        assert key in parser, f"{name}: {key} is not an id of train.json + {files}"
        assert parser[key] != value, f"{name}: {key} is already {value} in the shipped configs"


def test_the_table_gives_best_and_last_epoch_and_the_change_from_the_base_of_the_same_seed():
    rows = [
        {"dataset": "dsb2018", "ablation": name, "seed": seed, "val_best": best, "val_last": last, "train_seconds": 9.0}
        for name, runs in (("base", ((0.80, 0.78), (0.82, 0.80))), ("batch size 4", ((0.84, 0.84), (0.86, 0.84))))
        for seed, (best, last) in enumerate(runs)
    ]
    rows.append({**rows[0], "ablation": "warm-up", "val_best": 0.81, "val_last": 0.81})  # seed 0 only
    result = {
        "machine": {"summary": "a test machine"},
        "base": {"learning_rate": 0.002},
        "settings": {"dsb2018": {"image_size": [96, 96], "num_epochs": 4}},
        "rows": rows,
    }
    text = ablations_markdown(result)
    assert "base overrides {'learning_rate': 0.002}" in text
    assert "| base | 0.8100 ± 0.0141 | 0.7900 ± 0.0141 | +0.0000 | 2 | 9 |" in text
    assert "| batch size 4 | 0.8500 ± 0.0141 | 0.8400 ± 0.0000 | +0.0500 | 2 | 9 |" in text
    assert "| warm-up | 0.8100 ± n/a | 0.8100 ± n/a | +0.0300 | 1 | 9 |" in text  # against seed 0's 0.78


def test_unknown_ablations_are_named_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match=r"Unknown data sets or ablations \['dropout'\]"):
        ablations(data_root=str(tmp_path), out=str(tmp_path), names=["dropout"])
