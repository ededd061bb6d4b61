"""metadata.json against the schema kept here; the network's shapes; TorchScript export and reload."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from conftest import BUNDLE_ROOT, CONFIGS

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
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    network = parser.get_parsed_content("network_def").eval()
    checkpoint = tmp_path / "model.pt"
    torch.save(network.state_dict(), checkpoint)
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(checkpoint),
        meta_file=META,
        config_file=str(CONFIGS / "inference.json"),
        key_in_ckpt="",
    )
    reloaded = torch.jit.load(str(exported))
    image = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(image), network(image), rtol=1e-4, atol=1e-4)
