"""``nerveseg prepare`` on the real data sets beside the repository (USGRA-seg nerve, DSB2018 nuclei), and a training
run on a prepared real datalist; skipped when ``../shared/data`` is absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import (
    CONFIGS,
    SHARED_DATA,
    all_items,
    check_prepared_pairs,
    check_subject_grouping,
    run_workflow,
    tiny_overrides,
)
from nerveseg.bundle.data.datalist import build_datalist
from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.data.prepare import prepare

pytestmark = pytest.mark.slow

USGRA = SHARED_DATA / "usgra_seg"
DSB = SHARED_DATA / "dsb2018"
needs_usgra = pytest.mark.skipif(not USGRA.is_dir(), reason=f"USGRA-seg real data not found at {USGRA}")
needs_dsb = pytest.mark.skipif(not DSB.is_dir(), reason=f"DSB2018 real data not found at {DSB}")


@pytest.fixture(scope="module")
def usgra(tmp_path_factory) -> Path:
    if not USGRA.is_dir():
        pytest.skip(f"USGRA-seg real data not found at {USGRA}")
    out = tmp_path_factory.mktemp("prepared") / "usgra" / "datalist.json"
    prepare("folders", USGRA, out, num_folds=5, test_fraction=0.1, seed=0, target_class=1)
    return out


@needs_usgra
def test_usgra_nerve_class(usgra):
    datalist = json.loads(usgra.read_text())
    report = json.loads((usgra.parent / "report.json").read_text())
    assert len(all_items(datalist)) + len(report["dropped_duplicates"]) == 204
    assert report["converted"] == 204 and report["bad_files"] == []
    check_prepared_pairs(usgra.parent, datalist)
    check_subject_grouping(datalist)
    source = np.asarray(Image.open(USGRA / "masks" / "0000.png"))
    prepared = next(i for i in all_items(datalist) if Path(i["image"]).stem == "0000")
    np.testing.assert_array_equal(np.asarray(Image.open(usgra.parent / prepared["label"])) > 0, source == 1)
    assert (usgra.parent / "report.png").stat().st_size > 0
    assert {item["fold"] for item in datalist["training"]} == {1, 2, 3, 4}


@needs_usgra
def test_usgra_rerun_is_identical(usgra, tmp_path):
    again = tmp_path / "usgra" / "datalist.json"
    shutil.copytree(usgra.parent, again.parent)
    prepare("folders", USGRA, again, num_folds=5, test_fraction=0.1, seed=0, target_class=1)  # over its own output
    assert again.read_text() == usgra.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["usgra"]  # no partial or old folder left


@needs_usgra
def test_usgra_class_map_needs_a_target_class(tmp_path):
    with pytest.raises(DatasetError, match="a class or instance map"):
        prepare("folders", USGRA, tmp_path / "out" / "datalist.json")
    assert list(tmp_path.iterdir()) == []  # the failed run left nothing behind


@needs_usgra
def test_training_runs_on_a_prepared_datalist(usgra, tmp_path):
    """The spine's configs train on a prepared real datalist with only the datalist override."""
    overrides = tiny_overrides(tmp_path, num_epochs=2, batch_size=8, image_size=(64, 64))
    run_workflow("training", [CONFIGS / "train.json"], datalist_file=str(usgra), **overrides)
    assert (tmp_path / "models" / "model.pt").is_file()
    assert len(build_datalist(datalist_file=usgra)["validation"]) == len(json.loads(usgra.read_text())["validation"])


@needs_dsb
def test_dsb2018_instance_maps(tmp_path):
    out = tmp_path / "dsb" / "datalist.json"
    prepare("folders", DSB, out, masks="labels", instances=True, num_folds=3, seed=1)
    datalist = json.loads(out.read_text())
    report = json.loads((out.parent / "report.json").read_text())
    assert report["converted"] == 500
    assert len(all_items(datalist)) + len(report["dropped_duplicates"]) == 500
    check_prepared_pairs(out.parent, datalist)
    check_subject_grouping(datalist)
    for item in datalist["validation"][:5]:  # the union of instances is the provided binary mask
        union = np.asarray(Image.open(out.parent / item["label"])) > 0
        np.testing.assert_array_equal(union, np.asarray(Image.open(DSB / "masks" / Path(item["image"]).name)) > 0)
