"""metadata.json against the schema kept here; the network's shapes; TorchScript export and reload."""

from __future__ import annotations

import json

import pytest
from monai.bundle import verify_metadata, verify_net_in_out

from conftest import BUNDLE_ROOT, CONFIGS, assert_export_reloads

META = str(CONFIGS / "metadata.json")
SCHEMA = str(BUNDLE_ROOT / "tests" / "meta_schema.json")


def test_metadata_matches_schema():
    verify_metadata(meta_file=META, filepath=SCHEMA)


def test_metadata_names_the_nerve_channel():
    pred = json.loads((CONFIGS / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]
    assert pred["channel_def"] == {"0": "background", "1": "nerve"}


def test_metadata_violation_is_reported(tmp_path):
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["num_channels"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="num_channels"):
        verify_metadata(meta_file=str(broken), filepath=SCHEMA)


@pytest.mark.parametrize("config_file", ["train.json", "inference.json"])
@pytest.mark.parametrize("n", [2, 3])
def test_network_in_out(config_file, n):
    verify_net_in_out(
        net_id="network_def",
        meta_file=META,
        config_file=str(CONFIGS / config_file),
        n=n,
        any_type=False,
        device="cpu",
    )


def test_torchscript_export_reloads(tmp_path):
    """The deployed network (inference.json) exports by scripting, as MONAI's ckpt_export does by default."""
    assert_export_reloads([str(CONFIGS / "inference.json")], tmp_path, key_in_ckpt="")
