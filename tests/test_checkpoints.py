"""State dicts read with errors that name the file, and written without half-written files."""

from __future__ import annotations

import pytest
import torch

from nerveseg.networks.checkpoints import read_state_dict, save_atomically


def test_round_trip_and_nested_state(tmp_path):
    state = {"weight": torch.arange(3.0)}
    path = save_atomically(state, tmp_path / "models" / "model.pt")
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
