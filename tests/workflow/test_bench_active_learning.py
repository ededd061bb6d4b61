"""``nerveseg bench active-learning --quick``: rounds trained by train.json's trainer, ASME selection against random."""

from __future__ import annotations

import json

import pytest

from conftest import BUNDLE_ROOT, nerve_folders
from nerveseg.scripts.bench import bench


@pytest.mark.slow
def test_quick_simulation_trains_every_round_through_the_bundle(tmp_path):
    src = nerve_folders(tmp_path / "usgra_like", count=15)
    out = tmp_path / "bench"
    bench("active-learning", src=str(src), out=str(out), bundle_root=str(BUNDLE_ROOT), quick=True)

    result = json.loads((out / "active_learning.json").read_text())
    rows = {(row["strategy"], row["labelled"]): row for row in result["rows"]}
    assert sorted(rows) == [("asme", 4), ("asme", 8), ("random", 4), ("random", 8)]
    assert {row["seed"] for row in rows.values()} == {0}
    first_asme, first_random = rows[("asme", 4)], rows[("random", 4)]
    assert first_asme["dice"] == first_random["dice"]  # the shared first round is trained once
    assert first_asme["train_seconds"] == first_random["train_seconds"]
    assert 0 <= first_asme["chosen_consistency_mean"] <= first_asme["pool_consistency_mean"] <= 1
    assert len(first_asme["added"]) == 4 and "added" not in rows[("asme", 8)]
    assert all(0 <= row["dice"] <= 1 for row in rows.values())
    assert "train.json's BasicUNet with features [4, 4, 8, 8, 16, 4]" in result["settings"]

    runs = out / "active_learning" / "runs" / "seed0"
    assert sorted(p.name for p in runs.iterdir()) == ["asme8", "first", "random8"]
    round_datalist = json.loads((runs / "asme8" / "datalist.json").read_text())
    assert len(round_datalist["training"]) == 8
    assert {item["image"].rsplit("/", 1)[-1][:-4] for item in round_datalist["training"]} >= set(first_asme["added"])
    assert (runs / "asme8" / "outputs" / "train.log").is_file()
    assert not list(runs.rglob("*.pt"))  # the networks were scored in memory, no checkpoint kept
    assert sorted(p.name for p in out.iterdir()) == [
        "active_learning",
        "active_learning.json",
        "active_learning.md",
        "active_learning.png",
    ]
    assert not (out / "active_learning" / "active_learning.partial.json").exists()
    assert "| 8 |" in (out / "active_learning.md").read_text()
