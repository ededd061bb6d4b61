"""Int8 quantization: calibrated and scored on a split, kept beside the checkpoint only where Dice holds, run by
``inference_precision: "int8"``, and float32 with a reason otherwise."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from conftest import BUNDLE_ROOT, TINY_NETWORK, nerve_folders, tiny_checkpoint
from nerveseg.bundle.inference import openvino_cache
from nerveseg.bundle.inference.streaming import StreamingSegmenter, labelled_frames, streaming_dice
from nerveseg.utils.errors import UserInputError

pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

OVERRIDES = {"network_def": TINY_NETWORK}


@pytest.fixture
def datalist(tmp_path):
    """Six labelled 64x64 images in a validation split."""
    root = nerve_folders(tmp_path / "data", count=6)
    items = [{"image": f"images/case{i}.png", "label": f"masks/case{i}.png"} for i in range(6)]
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": items[:1], "validation": items}))
    return path


def quantize(checkpoint, datalist, tolerance):
    from nerveseg.bundle.inference.quantization import quantize_checkpoint

    return quantize_checkpoint(datalist, BUNDLE_ROOT, checkpoint, tolerance=tolerance, overrides=OVERRIDES)


def segmenter(checkpoint, precision: str) -> StreamingSegmenter:
    overrides = {**OVERRIDES, "inference_backend": "openvino", "inference_precision": precision}
    return StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=overrides)


def test_an_accepted_int8_model_is_kept_beside_the_checkpoint_and_run_by_int8_precision(tmp_path, datalist, caplog):
    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    record = quantize(checkpoint, datalist, tolerance=1.0)
    assert record["accepted"] and record["images"] == 6
    assert record["dice_change"] == pytest.approx(record["dice_int8"] - record["dice_float32"])
    entry = tmp_path / "models" / "openvino" / "model-BasicUNet-1x32x48-int8"
    assert record["entry"] == str(entry) and (entry / "model.xml").is_file()
    assert json.loads((entry / "conversion.json").read_text())["dice_int8"] == record["dice_int8"]

    pairs = labelled_frames(datalist)
    with caplog.at_level(logging.WARNING):
        int8 = segmenter(checkpoint, "int8")
        dice = streaming_dice(int8, pairs)
    assert not [r for r in caplog.records if "int8" in r.getMessage()]
    assert int8.execution_path == "openvino int8"
    assert np.mean(dice) == pytest.approx(record["dice_int8"])  # the scored model is the one run
    model = int8.inferer.openvino_network(int8.network).converted_model(int8.network_input(pairs[0][0]))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def test_a_refused_int8_model_keeps_its_reason_and_int8_precision_runs_float32(tmp_path, datalist, caplog):
    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    record = quantize(checkpoint, datalist, tolerance=-1.0)  # int8 would have to gain a whole Dice point
    assert not record["accepted"] and "beyond the tolerance -1.0" in record["reason"]
    entry = tmp_path / "models" / "openvino" / "model-BasicUNet-1x32x48-int8"
    assert (entry / "conversion.json").is_file() and not (entry / "model.xml").exists()

    frame = labelled_frames(datalist)[0][0]
    int8 = segmenter(checkpoint, "int8")
    assert int8.execution_path == "openvino int8"  # what it was asked for, until its first frame
    with caplog.at_level(logging.WARNING):
        mask = int8(frame)
    assert any("was refused" in r.getMessage() and "float32 is used" in r.getMessage() for r in caplog.records)
    assert int8.execution_path == "openvino float32"  # what ran
    np.testing.assert_array_equal(mask, segmenter(checkpoint, "float32")(frame))


def test_an_int8_model_of_an_older_checkpoint_is_not_used(tmp_path, datalist):
    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    quantize(checkpoint, datalist, tolerance=1.0)
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # trained again
    entry = openvino_cache.entry_path(tmp_path / "models" / "openvino", checkpoint, "BasicUNet", (1, 32, 48))
    model, reason = openvino_cache.read_quantized(entry, openvino_cache.checkpoint_record(checkpoint), None)
    assert model is None and "another checkpoint" in reason and "nerveseg quantize" in reason


def test_no_int8_model_says_how_to_make_one(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    entry = openvino_cache.entry_path(tmp_path / "models" / "openvino", checkpoint, "BasicUNet", (1, 32, 48))
    model, reason = openvino_cache.read_quantized(entry, openvino_cache.checkpoint_record(checkpoint), None)
    assert model is None and "no int8 model" in reason and "nerveseg quantize" in reason


def test_quantization_needs_the_cache(tmp_path, datalist):
    from nerveseg.bundle.inference.quantization import quantize_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    with pytest.raises(UserInputError, match="inference_cache_dir is None"):
        quantize_checkpoint(datalist, BUNDLE_ROOT, checkpoint, overrides={**OVERRIDES, "inference_cache_dir": None})


def test_the_quantize_command_says_what_it_kept(tmp_path, datalist, monkeypatch, capsys):
    from nerveseg.scripts.quantize import quantize as quantize_command

    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    monkeypatch.chdir(BUNDLE_ROOT)
    quantize_command(
        str(datalist), str(checkpoint), tolerance=1.0, overrides=f"--network_def '{json.dumps(TINY_NETWORK)}'"
    )
    printed = capsys.readouterr().out
    assert "int8 accepted: mean Dice" in printed and "run it with --inference_precision int8" in printed


def test_the_test_split_is_not_used_for_calibration(tmp_path, datalist):
    from nerveseg.bundle.inference.quantization import quantize_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    with pytest.raises(UserInputError, match="use the validation split"):
        quantize_checkpoint(datalist, BUNDLE_ROOT, checkpoint, split="test", overrides=OVERRIDES)


def test_a_split_the_datalist_lacks_is_named(datalist):
    with pytest.raises(UserInputError, match="has no 'test' split"):
        labelled_frames(datalist, "test")
