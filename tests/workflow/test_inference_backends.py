"""The OpenVINO backend through the real evaluate and inference configs: the same Dice and masks as torch.

The checkpoint is the configs' default network with seeded random weights (no training), so the two backends
are compared on the same weights in a minute.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from conftest import CONFIGS, run_workflow, tiny_overrides
from nerveseg.utils.files import save_state_dict

pytestmark = pytest.mark.slow

EVALUATE = [CONFIGS / "train.json", CONFIGS / "evaluate.json"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``models/model.pt`` of the default network, random but seeded, in a scratch working folder."""
    pytest.importorskip(
        "openvino", reason="the openvino backend needs the openvino package, a dependency: pip install -e ."
    )
    work = tmp_path_factory.mktemp("backends")
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json")])
    torch.manual_seed(0)
    save_state_dict(parser.get_parsed_content("network_def").state_dict(), work / "models" / "model.pt")
    return work


def per_image(path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def test_openvino_evaluation_and_inference_match_torch(checkpoint, tiny_dataset):
    work = checkpoint
    overrides = {"dataset_dir": str(tiny_dataset), **tiny_overrides(work)}
    for backend in ("torch", "openvino"):
        run_workflow(
            "evaluating", EVALUATE, **{**overrides, "output_dir": str(work / backend)}, inference_backend=backend
        )
    (entry,) = (work / "models" / "openvino").iterdir()  # cached beside the checkpoint, one entry
    assert entry.name == "model-BasicUNet-1x64x96"
    assert json.loads((entry / "conversion.json").read_text())["max_abs_diff"] < 1e-3
    summaries = {b: json.loads((work / b / "eval" / "summary.json").read_text()) for b in ("torch", "openvino")}
    assert summaries["openvino"]["mean_dice"] == pytest.approx(summaries["torch"]["mean_dice"], abs=0.005)
    torch_rows, openvino_rows = (per_image(work / b / "eval" / "metrics.csv") for b in ("torch", "openvino"))
    assert torch_rows.keys() == openvino_rows.keys()
    predicted = sum(int(row["pred_area"]) for row in torch_rows.values())
    changed = sum(abs(int(openvino_rows[i]["pred_area"]) - int(row["pred_area"])) for i, row in torch_rows.items())
    assert predicted > 0 and changed <= 0.001 * predicted

    inference = {**overrides, "input_dir": str(tiny_dataset / "test")}
    del inference["num_epochs"], inference["batch_size"]
    for backend in ("torch", "openvino"):
        out = work / f"masks_{backend}"
        run_workflow(
            "inference",
            [CONFIGS / "inference.json"],
            **{**inference, "output_dir": str(out)},
            inference_backend=backend,
        )
    for mask in sorted((work / "masks_torch").iterdir()):
        expected, got = (np.asarray(Image.open(work / f"masks_{b}" / mask.name)) for b in ("torch", "openvino"))
        assert np.mean(expected != got) <= 0.001, mask.name
    assert len(list((work / "models" / "openvino").iterdir())) == 1  # inference reused evaluation's conversion
