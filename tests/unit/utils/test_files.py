"""Atomic result files, and state dicts read with errors that name the file."""

from __future__ import annotations

import pytest
import torch

from nerveseg.utils.files import (
    atomic_path,
    read_state_dict,
    save_state_dict,
    write_json_atomically,
    write_text_atomically,
)


def test_write_replaces_whole_files_and_leaves_no_partial(tmp_path):
    path = write_text_atomically(tmp_path / "out" / "table.md", "first\n")
    write_text_atomically(path, "second\n")
    assert path.read_text() == "second\n"
    write_json_atomically(tmp_path / "out" / "override.json", {"threshold": 0.4})
    assert sorted(p.name for p in path.parent.iterdir()) == ["override.json", "table.md"]


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    path = write_text_atomically(tmp_path / "table.md", "old\n")
    with pytest.raises(RuntimeError), atomic_path(path) as partial:
        partial.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_a_folder_replaces_the_old_folder_only_when_complete(tmp_path):
    (tmp_path / "app" / "old.txt").parent.mkdir()
    (tmp_path / "app" / "old.txt").write_text("old")
    with atomic_path(tmp_path / "app") as partial:
        partial.mkdir()
        (partial / "new.txt").write_text("new")
    assert [p.name for p in (tmp_path / "app").iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["app"]


def test_round_trip_and_nested_state(tmp_path):
    state = {"weight": torch.arange(3.0)}
    path = save_state_dict(state, tmp_path / "models" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]
    torch.testing.assert_close(read_state_dict(path)["weight"], state["weight"])
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pt")
    assert list(read_state_dict(tmp_path / "nested.pt")) == ["weight"]


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="Classifier checkpoint file .*absent.pt does not exist"):
        read_state_dict(tmp_path / "absent.pt", "Classifier checkpoint")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="Cannot read checkpoint .*text.pt"):
        read_state_dict(tmp_path / "text.pt")
    torch.save({"weight": torch.zeros(1), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="mixed.pt is not a state dict of tensors"):
        read_state_dict(tmp_path / "mixed.pt")


def test_a_folder_never_replaces_a_completed_one_when_told_not_to(tmp_path):
    (tmp_path / "data").mkdir()
    with atomic_path(tmp_path / "data", replace=False) as partial:  # an empty folder is replaced
        partial.mkdir()
        (partial / "first.txt").write_text("first")
    with pytest.raises(FileExistsError, match="exists and is not empty"), atomic_path(tmp_path / "data", False) as p:
        p.mkdir()
        (p / "second.txt").write_text("second")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["first.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
