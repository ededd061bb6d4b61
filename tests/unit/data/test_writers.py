"""The key metric follows the challenge; the mask writer keeps (H, W) order and writes atomically."""

from __future__ import annotations

import numpy as np
import torch
from monai.bundle import ConfigParser
from PIL import Image

from conftest import CONFIGS
from nerveseg.bundle.data.writers import RowMajorPILWriter


def _metric():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    return parser.get_parsed_content("validate#key_metric#val_mean_dice#metric_fn")


def test_key_metric_is_the_challenge_mean_dice():
    empty, square, shifted = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    square[0, 2:6, 2:6] = 1
    shifted[0, 2:6, 3:7] = 1  # overlaps square on 12 of 16 pixels
    preds = torch.stack([empty, square, empty, square])
    labels = torch.stack([empty, empty, square, shifted])
    metric = _metric()
    metric(y_pred=preds, y=labels)
    per_image = metric.get_buffer().flatten().tolist()
    assert per_image == [1.0, 0.0, 0.0, 0.75]
    assert metric.aggregate().item() == 0.4375


def test_writer_keeps_height_and_width(tmp_path):
    mask = np.zeros((1, 20, 30), dtype=np.uint8)
    mask[0, 2:5, 10:25] = 255
    writer = RowMajorPILWriter(output_dtype=np.uint8)
    writer.set_data_array(mask, channel_dim=0)
    writer.write(tmp_path / "7_mask.tif")
    saved = np.asarray(Image.open(tmp_path / "7_mask.tif"))
    assert saved.shape == (20, 30)
    np.testing.assert_array_equal(saved, mask[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7_mask.tif"]
