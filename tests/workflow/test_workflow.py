"""Train -> evaluate -> infer through the real configs, on tiny synthetic data, from outside the bundle root.

One ``python -m monai.bundle run`` smoke test each for training, evaluation and inference; the other workflows run
in this process through ``ConfigWorkflow``.
"""

from __future__ import annotations

import csv
import json
import shlex

import numpy as np
import pytest
from PIL import Image

from conftest import BUNDLE_ROOT, CONFIGS, as_arguments, run_bundle, run_workflow, tiny_overrides, tiny_run_overrides
from nerveseg.scripts import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A bundle run in a scratch working directory, with the bundle root given explicitly."""
    work = tmp_path_factory.mktemp("work")
    overrides = ["--dataset_dir", str(tiny_dataset), *tiny_run_overrides(work, num_epochs=2)]
    configs = ["--config_file", str(BUNDLE_ROOT / "configs" / "train.json")]
    result = run_bundle("run", "training", *configs, *overrides, cwd=work)
    return work, overrides, result


def test_training_writes_model_events_and_log(trained):
    work, _, result = trained
    assert (work / "models" / "model.pt").is_file()
    assert list((work / "outputs").glob("events.out.tfevents.*"))
    log = (work / "outputs" / "train.log").read_text()
    assert "Epoch[2] Metrics -- val_mean_dice" in log and "Epoch 2/2 done in" in log and "iterations, loss" in log


def test_evaluation_writes_per_image_csv(trained, tiny_dataset):
    work, overrides, _ = trained
    configs = json.dumps([str(BUNDLE_ROOT / "configs" / name) for name in ("train.json", "evaluate.json")])
    run_bundle("run", "evaluating", "--config_file", configs, *overrides, cwd=work)
    with open(work / "outputs" / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "id", "dice", "iou", "sensitivity", "specificity", "accuracy", "pred_area", "label_area"
    ]  # fmt: skip
    for row in rows:
        label = np.asarray(Image.open(tiny_dataset / "train" / f"{row['id']}_mask.tif"))
        assert int(row["label_area"]) == np.count_nonzero(label)  # compared at the original size
        assert 0.0 <= float(row["dice"]) <= 1.0
        if int(row["label_area"]) == 0 and int(row["pred_area"]) == 0:
            assert float(row["dice"]) == 1.0
    assert "Mean Dice over" in (work / "outputs" / "eval" / "evaluate.log").read_text()
    summary = json.loads((work / "outputs" / "eval" / "summary.json").read_text())
    assert summary["images"] == len(rows)
    assert summary["mean_dice"] == pytest.approx(np.mean([float(row["dice"]) for row in rows]))
    assert sum(summary["presence_confusion"].values()) == len(rows)
    for figure in ("dice_histogram.png", "worst_cases.png"):
        assert Image.open(work / "outputs" / "eval" / figure).format == "PNG"


def test_inference_writes_masks_at_input_size(trained, tiny_dataset):
    work, overrides, _ = trained
    out = work / "predictions"
    configs = ["--config_file", str(BUNDLE_ROOT / "configs" / "inference.json")]
    inference_overrides = [o for o in overrides if o not in ("--num_epochs", "2", "--batch_size", "4")]
    run_bundle("run", "inference", *configs, *inference_overrides, "--output_dir", str(out), cwd=work)
    inputs = sorted(p.stem for p in (tiny_dataset / "test").glob("*.tif"))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}_mask.tif" for stem in inputs)
    for stem in inputs:
        image = Image.open(tiny_dataset / "test" / f"{stem}.tif")
        mask = Image.open(out / f"{stem}_mask.tif")
        assert mask.size == image.size and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_inference_restores_each_original_size(trained, tiny_dataset, tmp_path):
    """Images of two sizes in one folder: each mask comes back at its own image's size."""
    work = trained[0]
    inputs, out = tmp_path / "inputs", tmp_path / "masks"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"1": (70, 100), "2": (45, 130)}  # (height, width), neither a multiple of 32
    for name, (height, width) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(inputs / f"{name}.tif")
    overrides = {**_inference_overrides(work, tiny_dataset), "input_dir": str(inputs), "output_dir": str(out)}
    run_workflow("inference", [CONFIGS / "inference.json"], **overrides)
    for name, (height, width) in sizes.items():
        assert np.asarray(Image.open(out / f"{name}_mask.tif")).shape == (height, width)


def _inference_overrides(work, dataset) -> dict:
    overrides = {"dataset_dir": str(dataset), **tiny_overrides(work)}
    del overrides["num_epochs"], overrides["batch_size"]
    return overrides


def test_asme_evaluation_tuning_inference_and_submission(trained, tiny_dataset, capsys):
    """The ensemble and post-processing path end to end: evaluate with ASME, tune, infer, write the submission."""
    work = trained[0]
    overrides = {"dataset_dir": str(tiny_dataset), **tiny_overrides(work, num_epochs=2)}
    configs = [str(CONFIGS / name) for name in ("train.json", "evaluate.json", "asme.json")]
    run_workflow("evaluating", configs, **{**overrides, "output_dir": str(work / "asme")})
    with open(work / "asme" / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(0.0 <= float(row["asme_consistency"]) <= 1.0 for row in rows)
    assert "consistency_dice_spearman" in json.loads((work / "asme" / "eval" / "summary.json").read_text())

    tuned = work / "asme" / "postprocessing.json"
    tune_configs = json.dumps([*configs, str(CONFIGS / "tune.json")])
    cli.tune(config_file=tune_configs, out=str(tuned), overrides=shlex.join(as_arguments(overrides)))
    printed = capsys.readouterr().out
    assert "default" in printed and "tuned" in printed
    assert set(json.loads(tuned.read_text())) == {"threshold", "min_area", "gate_threshold"}

    predictions = work / "asme_predictions"
    inference = [CONFIGS / "inference.json", CONFIGS / "asme.json", tuned]
    run_workflow("inference", inference, **{**_inference_overrides(work, tiny_dataset), "output_dir": str(predictions)})
    submission = work / "submission.csv"
    cli.submit(masks=str(predictions), out=str(submission), shape=(64, 96))
    lines = submission.read_text().splitlines()
    test_ids = sorted(int(p.stem) for p in (tiny_dataset / "test").glob("*.tif"))
    assert lines[0] == "img,pixels" and [int(line.split(",")[0]) for line in lines[1:]] == test_ids


def test_evaluation_scores_the_named_split(trained, tiny_dataset, tmp_path):
    """``--eval_split test`` scores the labelled test subjects that ``nerveseg prepare`` held out, into eval_test/."""
    from nerveseg.bundle.data.prepare import prepare
    from nerveseg.utils.errors import find_user_error

    work, _, _ = trained
    report = prepare(
        "nerve",
        tiny_dataset,
        tmp_path / "prepared" / "datalist.json",
        num_folds=2,
        test_subjects=[3],
        duplicates="keep",
    )
    overrides = {**tiny_overrides(work), "datalist_file": str(tmp_path / "prepared" / "datalist.json")}
    overrides["output_dir"] = str(tmp_path / "outputs")
    run_workflow("evaluating", [CONFIGS / "train.json", CONFIGS / "evaluate.json"], **overrides, eval_split="test")
    with open(tmp_path / "outputs" / "eval_test" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["id"] for row in rows) == sorted(f"3_{frame}" for frame in range(1, 7))
    assert report["subjects"]["test"] == ["3"] and not (tmp_path / "outputs" / "eval").exists()

    raw = {**tiny_overrides(work), "dataset_dir": str(tiny_dataset), "output_dir": str(tmp_path / "raw")}
    with pytest.raises(RuntimeError) as raised:  # the raw folder's test/ images have no masks
        run_workflow("evaluating", [CONFIGS / "train.json", CONFIGS / "evaluate.json"], **raw, eval_split="test")
    assert str(find_user_error(raised.value)).startswith("eval_split is 'test', but none of its 3 images has a label")
