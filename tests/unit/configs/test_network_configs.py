"""Every network a user can select (train.json's default and each file in configs/networks/) through the configs."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser, verify_net_in_out
from monai.data import decollate_batch

from conftest import CONFIGS

TRAIN = CONFIGS / "train.json"
META = CONFIGS / "metadata.json"
NETWORK_FILES = sorted((CONFIGS / "networks").glob("*.json"))
STACKS = [[TRAIN]] + [[TRAIN, path] for path in NETWORK_FILES]
IDS = ["default"] + [path.stem for path in NETWORK_FILES]


def _parser(stack) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(path) for path in stack])
    parser.read_meta(str(META))
    return parser


def test_every_network_file_is_tested():
    assert {"flexible_unet", "unetplusplus", "efficient_unetplusplus", "munet", "presence_gated"} <= set(IDS)


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
@pytest.mark.parametrize("n", [1, 2])
def test_verify_net_in_out(stack, n):
    """MONAI's check of the metadata's input/output format, at 32x32 and 64x64."""
    verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=[str(p) for p in stack], n=n, device="cpu")


@pytest.mark.parametrize("stack, name", zip(STACKS, IDS, strict=True), ids=IDS)
def test_forward_backward_and_train_postprocessing(stack, name):
    torch.manual_seed(0)
    parser = _parser(stack)
    network, loss = parser.get_parsed_content("network_def"), parser.get_parsed_content("loss")
    image = torch.rand(2, 1, 64, 96)
    label = torch.zeros(2, 1, 64, 96)
    label[0, :, 20:40, 30:60] = 1
    network.train()
    output = network(image)
    loss(output, label).backward()
    gradients = [p.grad for p in network.parameters() if p.requires_grad and p.grad is not None]
    assert gradients and any(float(g.abs().sum()) > 0 for g in gradients)

    # Training metrics see the training output through the train post-processing.
    postprocessing = parser.get_parsed_content("train#postprocessing")
    samples = [postprocessing(s) for s in decollate_batch({"pred": output, "label": label})]
    assert [tuple(s["pred"].shape) for s in samples] == [(1, 64, 96)] * 2
    assert all(set(s["pred"].unique().tolist()) <= {0.0, 1.0} for s in samples)

    network.eval()
    with torch.no_grad():
        prediction = network(image)
    assert isinstance(prediction, torch.Tensor) and prediction.shape == (2, 1, 64, 96)
