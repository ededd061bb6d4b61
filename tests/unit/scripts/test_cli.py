"""The ``nerveseg`` command line, in process."""

from __future__ import annotations

import json

import pytest

from nerveseg.scripts import cli


def test_synth_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "synthetic"
    cli.synth(out=str(out), num_subjects=2, frames_per_subject=3, num_test_images=1)
    assert str(out) in capsys.readouterr().out
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["num_train_frames"] == 6
    assert len(list((out / "train").glob("*_mask.tif"))) == 6
    assert [p.name for p in (out / "test").iterdir()] == ["1.tif"]


def test_gate_refuses_an_unreadable_checkpoint(tmp_path):
    (tmp_path / "segmenter.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match=f"Cannot read segmenter checkpoint {tmp_path / 'segmenter.pt'}"):
        cli.gate(tmp_path / "segmenter.pt", tmp_path / "classifier.pt", tmp_path / "gated" / "model.pt")
    assert not (tmp_path / "gated").exists()
