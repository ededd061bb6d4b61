"""The league's ablations: each one changes what it names in the shipped configs, and its table reads the change."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ignite.engine import Engine, Events

from conftest import BUNDLE_ROOT
from nerveseg.bundle import runs
from nerveseg.scripts.bench.league_ablations import ABLATIONS, ablations, ablations_markdown, results_name
from nerveseg.utils.errors import UserInputError


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_names_config_files_and_ids_that_exist(name):
    files, overrides = ABLATIONS[name]
    parser = runs.read_config(runs.config_files(BUNDLE_ROOT, "configs/train.json", *files))
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
    with pytest.raises(UserInputError, match=r"Unknown data sets or ablations \['dropout'\]"):
        ablations(data_root=str(tmp_path), out=str(tmp_path), names=["dropout"])


def test_a_batch_of_ablations_skips_the_runs_already_saved_and_reruns_changed_ones(tmp_path, monkeypatch):
    from nerveseg.scripts.bench import league_ablations

    trained: list[tuple[str, int]] = []

    def fake_train(bundle_root, configs, run, before_run, seed, **settings):
        """Two validations, 0.6 then 0.7, through the evaluator the ablation attaches to."""
        trained.append((run.parent.name, seed))
        evaluator, scores = Engine(lambda engine, batch: None), iter([0.6, 0.7])
        evaluator.add_event_handler(
            Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_mean_dice=next(scores))
        )
        before_run(SimpleNamespace(parser=SimpleNamespace(get_parsed_content={"validate#evaluator": evaluator}.get)))
        for _ in range(2):
            evaluator.run([0], max_epochs=1)

    monkeypatch.setattr(league_ablations.runs, "train", fake_train)
    monkeypatch.setattr(league_ablations, "prepare_split", lambda source, folder, options: folder / "datalist.json")
    options = {"out": str(tmp_path), "bundle_root": str(BUNDLE_ROOT), "datasets": "dsb2018"}
    ablations(**options, names=["base", "EMS"], seeds=[0, 1])
    assert trained == [("base", 0), ("base", 1), ("EMS", 0), ("EMS", 1)]
    trained.clear()
    result = ablations(**options, names=["base", "EMS", "batch size 4"], seeds=[0, 1])
    assert trained == [("batch_size_4", 0), ("batch_size_4", 1)]
    assert len(result["rows"]) == 6 and result["rows"][0]["val_last"] == pytest.approx(0.7)
    trained.clear()
    monkeypatch.setitem(ABLATIONS, "EMS", (["configs/training/ems.json"], {"ems_iterations": 2}))  # changed
    result = ablations(**options, names=["EMS"], seeds=[0])
    assert trained == [("EMS", 0)] and len(result["rows"]) == 6  # its row replaced, not added
    trained.clear()
    ablations(**options, names=["base"], seeds=[0], base={"learning_rate": 0.002})  # another base: its own file
    assert trained == [("base", 0)]
    assert len(json.loads((tmp_path / "ablations.json").read_text())["rows"]) == 6
    other = tmp_path / f"{results_name({'learning_rate': 0.002})}.json"
    assert other.name.startswith("ablations_") and len(json.loads(other.read_text())["rows"]) == 1
