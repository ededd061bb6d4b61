"""The league: one row per run and views with every test image's Dice, paired verdicts, and resumable pieces."""

from __future__ import annotations

import json

import pytest

from conftest import BUNDLE_ROOT
from nerveseg.scripts.bench import league as league_module
from nerveseg.scripts.bench.league import league
from nerveseg.scripts.bench.league_table import DEFAULT, NNUNET, SYSTEMS, league_markdown, league_summary
from nerveseg.utils.errors import UserInputError

SMP = SYSTEMS[1]


def _rows(dice: dict[tuple[str, int], list[list[float]]], dataset: str = "usgra_seg") -> list[dict]:
    """Rows as the league writes them: ``dice[(system, views)][seed]`` is each test image's Dice."""
    rows = []
    for (system, views), per_seed in dice.items():
        for seed, image_dice in enumerate(per_seed):
            row = {"dataset": dataset, "system": system, "seed": seed, "machine": "a test machine", "views": views}
            row.update(test_dice=sum(image_dice) / len(image_dice), train_seconds=10.0, run_seconds=12.0)
            rows.append({**row, "image_dice": image_dice})
    return rows


def test_the_default_is_compared_with_each_system_at_as_many_views():
    default_one, default_four = [[0.7, 0.8, 0.9, 0.6]] * 3, [[0.75, 0.85, 0.95, 0.65]] * 3
    rows = _rows(
        {
            (DEFAULT, 1): default_one,
            (DEFAULT, 4): default_four,
            (SMP, 1): [[0.6, 0.7, 0.8, 0.5]] * 3,  # 0.1 below the default's one view on every image
            (SMP, 4): [[0.75, 0.85, 0.95, 0.65]] * 3,  # equal to ASME
            (NNUNET, 1): [[0.8, 0.9, 1.0, 0.7]] * 3,  # 0.1 above
            (NNUNET, 4): [[0.8, 0.9, 1.0, 0.7]],  # one seed only
        }
    )
    summary = league_summary(rows)["usgra_seg"]
    assert list(summary) == [DEFAULT, SMP, NNUNET] and "difference" not in summary[DEFAULT]["1"]
    assert summary[SMP]["1"]["difference"]["verdict"] == "win"
    assert summary[SMP]["1"]["difference"]["mean"] == pytest.approx(0.1)
    assert summary[SMP]["4"]["difference"]["verdict"] == "tie"  # four views against four, not against one
    assert summary[NNUNET]["1"]["difference"]["verdict"] == "loss"
    assert summary[NNUNET]["4"]["difference"]["seeds"] == [0] and summary[NNUNET]["4"]["sd"] is None
    assert summary[DEFAULT]["1"]["mean"] == pytest.approx(0.75) and summary[DEFAULT]["1"]["sd"] == 0.0


def test_the_markdown_shows_both_views_the_intervals_verdicts_and_piece_times():
    rows = _rows({(DEFAULT, 1): [[0.7, 0.8]] * 2, (DEFAULT, 4): [[0.7, 0.9]] * 2, (SMP, 1): [[0.6, 0.7]] * 2})
    rows[-1]["plan_and_preprocess_seconds"] = 3.0
    settings = {"pool": 8, "test": 2, "image_size": [64, 64], "num_epochs": 2, "batch_size": 8, "test_images": []}
    result = {"machine": {"summary": "now"}, "quick": True, "settings": {"usgra_seg": settings}, "rows": rows}
    result["summary"] = league_summary(rows)
    text = league_markdown(result)
    assert "QUICK smoke run: not a result" in text and "a test machine" in text
    assert "| default (four views: ASME) | 0.7500 ± 0.0000 | 0.8000 ± 0.0000 | 2 | 10 |" in text
    assert (
        "| smp Unet-b1 | 0.6500 ± 0.0000 | - | 2 | 10 (+3 planning) | +0.1000 [+0.1000, +0.1000], 2 seeds | win |"
        in text
    )
    assert "Minutes per piece (every system of a data set and seed): usgra_seg seed 0 0.4, usgra_seg seed 1 0.4" in text


def test_unknown_data_sets_and_a_missing_data_root_are_named(tmp_path):
    with pytest.raises(UserInputError, match=r"Unknown datasets \['cells'\]; choose from \['usgra_seg', 'dsb2018'\]"):
        league(data_root=str(tmp_path), datasets=["cells"])
    with pytest.raises(UserInputError, match=r"usgra_seg/images not found; pass --data_root"):
        league(data_root=str(tmp_path), datasets=["usgra_seg"])


def _fake_data(root, count: int = 10) -> None:
    from PIL import Image

    for kind in ("images", "masks"):
        (root / "usgra_seg" / kind).mkdir(parents=True)
    for index in range(count):
        Image.new("L", (16, 16), 40 + index).save(root / "usgra_seg" / "images" / f"case{index:02d}.png")
        Image.new("L", (16, 16), index % 2).save(root / "usgra_seg" / "masks" / f"case{index:02d}.png")


def test_a_stopped_league_goes_on_where_it_stopped(tmp_path, monkeypatch):
    """Each run's rows are saved as it ends; a rerun skips them, and runs again only those whose settings changed."""
    _fake_data(tmp_path / "data")
    calls: list[tuple[str, int]] = []
    hangs = [(NNUNET, 1)]  # once

    def fake_run(system, bundle_root, datalist, data, run, recipe, seed, batch_size, timeout):
        calls.append((system, seed))
        if (system, seed) in hangs:
            hangs.remove((system, seed))
            raise RuntimeError("nnU-Net's subprocess ran past 1 s while training")
        return [{"views": v, "test_dice": 0.5, "train_seconds": 1.0, "image_dice": [0.5, 0.5]} for v in (1, 4)]

    monkeypatch.setattr(league_module, "_run_system", fake_run)
    monkeypatch.setattr(league_module, "require_benchmark_extra", lambda *needed: None)
    monkeypatch.setattr(league_module, "_league_data", lambda bundle_root, datalist, size: {"digest": "inputs"})
    options = {"data_root": str(tmp_path / "data"), "out": str(tmp_path / "out"), "datasets": "usgra_seg"}
    options["bundle_root"] = str(BUNDLE_ROOT)
    with pytest.raises(RuntimeError, match="while training"):
        league(**options, seeds=[0, 1])
    saved = json.loads((tmp_path / "out" / "league.json").read_text())
    assert len(saved["rows"]) == 2 * (len(SYSTEMS) + len(SYSTEMS) - 1)  # seed 0 whole, seed 1 up to nnU-Net
    calls.clear()
    league(**options, seeds=[0, 1])
    assert calls == [(NNUNET, 1)]  # only the run that failed
    saved = json.loads((tmp_path / "out" / "league.json").read_text())
    assert len(saved["rows"]) == 4 * len(SYSTEMS) and set(saved["summary"]["usgra_seg"]) == set(SYSTEMS)
    calls.clear()
    monkeypatch.setattr(league_module, "config_digest", lambda bundle_root, files: "another train.json")
    league(**options, seeds=[0, 1])
    assert calls == [(DEFAULT, 0), (DEFAULT, 1)]  # the peers and nnU-Net do not read the default's configs
    assert len(json.loads((tmp_path / "out" / "league.json").read_text())["rows"]) == 4 * len(SYSTEMS)
    calls.clear()
    monkeypatch.setattr(league_module, "_league_data", lambda bundle_root, datalist, size: {"digest": "new inputs"})
    league(**options, seeds=[0])  # other inputs (another intensity scaling, say): every system again
    assert calls == [(system, 0) for system in SYSTEMS]
    assert len(json.loads((tmp_path / "out" / "league.json").read_text())["rows"]) == 2 * len(SYSTEMS)  # seed 1 out
    calls.clear()
    monkeypatch.setitem(league_module.DATASETS["usgra_seg"], "num_epochs", 3)  # a setting changed: all again
    league(**options, seeds=[0])
    assert len(calls) == len(SYSTEMS)
    assert len(json.loads((tmp_path / "out" / "league.json").read_text())["rows"]) == 2 * len(SYSTEMS)
