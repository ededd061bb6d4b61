"""Per-image scores, their summary, and the evaluation report's files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents
from PIL import Image

from nerveseg.bundle.handlers import PerImageReport
from nerveseg.bundle.metrics import image_scores, presence_auc, summarise


def test_scores_of_one_image():
    label = np.zeros((4, 5), bool)
    label[0, :4] = True  # 4 pixels
    pred = np.zeros((4, 5), bool)
    pred[0, 2:] = True  # 3 pixels, 2 of them right
    scores = image_scores(pred, label)
    assert scores["dice"] == pytest.approx(4 / 7) and scores["iou"] == pytest.approx(2 / 5)
    assert scores["sensitivity"] == pytest.approx(0.5) and scores["specificity"] == pytest.approx(15 / 16)
    assert scores["accuracy"] == pytest.approx(17 / 20)
    assert (scores["pred_area"], scores["label_area"]) == (3, 4)


def test_empty_on_empty_is_perfect_and_one_sided_is_zero():
    empty = np.zeros((3, 3))
    assert image_scores(empty, empty)["dice"] == 1.0 and image_scores(empty, empty)["sensitivity"] == 1.0
    full = np.ones((3, 3))
    assert image_scores(full, empty)["dice"] == 0.0 and image_scores(empty, full)["dice"] == 0.0
    with pytest.raises(ValueError, match=r"differ in shape; invert the resize"):
        image_scores(np.zeros((2, 2)), np.zeros((2, 3)))


def test_presence_auc():
    assert presence_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert presence_auc([1, 2], [True, True]) is None


def test_summary_counts_images_and_correlates_consistency():
    rows = [
        {**image_scores(np.ones((2, 2)), np.ones((2, 2))), "asme_consistency": 0.9},
        {**image_scores(np.zeros((2, 2)), np.zeros((2, 2))), "asme_consistency": 1.0},
        {**image_scores(np.ones((2, 2)), np.zeros((2, 2))), "asme_consistency": 0.2},
        {**image_scores(np.zeros((2, 2)), np.ones((2, 2))), "asme_consistency": 0.3},
    ]
    summary = summarise(rows)
    assert summary["mean_dice"] == 0.5
    assert summary["presence_confusion"] == {
        "true_positive": 1, "false_positive": 1, "false_negative": 1, "true_negative": 1
    }  # fmt: skip
    assert summary["consistency_dice_spearman"]["rho"] > 0.8
    with pytest.raises(ValueError, match="No images"):
        summarise([])


def test_report_writes_rows_summary_and_figures(tmp_path):
    samples = []
    for i, (pred_on, label_on) in enumerate([(1, 1), (0, 0), (1, 0), (0, 1)]):
        image = MetaTensor(torch.rand(1, 8, 8), meta={"filename_or_obj": f"/data/{i}.tif"})
        pred, label = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)  # masks at the "original" size
        pred[0, 4:10, 4:10], label[0, 5:11, 5:11] = pred_on, label_on
        samples.append({"image": image, "pred": pred, "label": label})
    scores = MetaTensor(torch.zeros(1, 1, 8, 8))
    scores.meta["asme_consistency"] = torch.tensor([0.9])
    scores.meta["asme_views_used"] = torch.tensor([2])
    scores.meta["class_logits"] = torch.tensor([[2.0]])

    def step(engine, index):
        engine.state.output = {"pred": scores}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return [samples[index]]

    evaluator = Engine(step)
    evaluator.register_events(*IterationEvents)
    PerImageReport(tmp_path / "eval" / "metrics.csv", num_worst=2).attach(evaluator)
    evaluator.run(list(range(4)), max_epochs=1)

    with open(tmp_path / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == ["0", "1", "2", "3"]
    assert [float(row["dice"]) for row in rows] == pytest.approx([50 / 72, 1.0, 0.0, 0.0])
    assert float(rows[0]["presence"]) == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert [row["asme_views_used"] for row in rows] == ["2"] * 4 and float(
        rows[0]["asme_consistency"]
    ) == pytest.approx(0.9)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["images"] == 4 and summary["presence_auc_score"] == "presence"
    assert summary["mean_asme_views_used"] == 2.0
    for figure in ("dice_histogram.png", "worst_cases.png", "consistency_vs_dice.png"):
        assert Image.open(tmp_path / "eval" / figure).format == "PNG"
    assert not list((tmp_path / "eval").glob(".*partial*"))
