"""The ``nerveseg`` command line, in process."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from conftest import image_mask_folders
from nerveseg.scripts import cli
from nerveseg.utils.errors import UserInputError


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


def test_main_runs_the_named_command(tmp_path, capsys):
    cli.main(["synth", "--out", str(tmp_path / "synthetic"), "--num_subjects", "2", "--frames_per_subject", "2"])
    assert "Synthetic dataset written to" in capsys.readouterr().out
    with pytest.raises(UserInputError, match="no command 'no-such-command'; choose one of synth, prepare, tune"):
        cli.main(["no-such-command"])


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]])
def test_main_lists_the_commands(argv, capsys):
    cli.main(argv)
    listing = capsys.readouterr().out
    assert listing.startswith("usage: nerveseg COMMAND")
    assert "  live         Segment a video, a folder of frames, or a live stream" in listing
    assert len(listing.splitlines()) == 3 + len(cli.COMMANDS)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_listed_summary_opens_its_commands_docstring(name):
    assert inspect.getdoc(cli._command(name)).startswith(cli.COMMANDS[name][1])


@pytest.mark.slow  # a new process
def test_the_data_commands_and_the_listing_run_without_importing_torch_or_monai(tmp_path):
    """torch's and MONAI's imports take seconds with every extra installed; ``--help``, ``synth`` and ``prepare``
    need neither."""
    src = image_mask_folders(tmp_path / "src")
    synth = ["synth", "--out", str(tmp_path / "synthetic"), "--num_subjects", "2", "--frames_per_subject", "2"]
    prepare = ["prepare", "folders", "--src", str(src), "--out", str(tmp_path / "prepared" / "datalist.json")]
    code = f"import sys; from nerveseg.scripts.cli import main; main(['--help']); main({synth}); main({prepare}); "
    code += "print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "False False"
    assert (tmp_path / "prepared" / "datalist.json").is_file()
