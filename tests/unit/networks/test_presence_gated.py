"""The two-stage model: presence classifier, gate, joined checkpoint, and the presence target transform."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate
from torch import nn

from nerveseg.networks.presence_gated import EMPTY_LOGIT, PresenceGatedSegmenter, gated_state_dict, presence_classifier
from nerveseg.transforms.presence import MaskToPresence, MaskToPresenced
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY, class_logits_of


class FixedLogits(nn.Module):
    """A stand-in classifier that returns given presence logits, one per image."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits)[:, None])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits[: image.shape[0]]


def _segmenter() -> nn.Module:
    return nn.Conv2d(1, 1, kernel_size=3, padding=1)


def test_classifier_returns_one_logit_per_image():
    classifier = presence_classifier("efficientnet-b0").eval()
    assert classifier(torch.rand(2, 1, 64, 96)).shape == (2, 1)
    with pytest.raises(ValueError, match="Unknown backbone .efficientnet-b9.; choose one of efficientnet-b0"):
        presence_classifier("efficientnet-b9")
    with pytest.raises(ValueError, match="in_channels must be at least 1, got 0"):
        presence_classifier(in_channels=0)


def test_gate_empties_exactly_the_images_below_threshold():
    segmenter = _segmenter()
    gated = PresenceGatedSegmenter(segmenter, FixedLogits([2.0, -2.0, 0.0]), threshold=0.3).eval()
    image = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        output, raw = gated(image), segmenter(image)
    torch.testing.assert_close(output[0], raw[0])  # sigmoid(2) = 0.88 > 0.3: kept
    assert torch.all(output[1] == EMPTY_LOGIT)  # 0.12: emptied
    torch.testing.assert_close(output[2], raw[2])  # 0.5: kept
    open_gate = PresenceGatedSegmenter(segmenter, FixedLogits([-9.0, -9.0, -9.0]), threshold=0.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(open_gate(image), raw)


def test_presence_logits_reach_each_sample_through_decollation():
    gated = PresenceGatedSegmenter(_segmenter(), FixedLogits([1.5, -0.5]), threshold=0.0).eval()
    samples = [{"image": MetaTensor(torch.rand(1, 16, 16), meta={"filename_or_obj": f"{i}.tif"})} for i in range(2)]
    batch = list_data_collate(samples)
    with torch.no_grad():
        pred = gated(batch["image"])
    assert isinstance(pred, MetaTensor) and pred.meta[CLASS_LOGITS_KEY].shape == (2, 1)
    items = decollate_batch({"image": batch["image"], "pred": pred})
    assert [float(class_logits_of(item["pred"])) for item in items] == [1.5, -0.5]
    assert [item["pred"].meta["filename_or_obj"] for item in items] == ["0.tif", "1.tif"]
    assert class_logits_of(torch.zeros(1)) is None


def test_gate_checks_its_arguments():
    with pytest.raises(ValueError, match="threshold must be in \\[0, 1\\), got 1.0"):
        PresenceGatedSegmenter(_segmenter(), FixedLogits([0.0]), threshold=1.0)
    wrong = PresenceGatedSegmenter(_segmenter(), nn.Conv2d(1, 1, 1), threshold=0.5)
    with pytest.raises(ValueError, match="must return \\[B, 1\\] presence logits, got shape \\(1, 1, 8, 8\\)"):
        wrong(torch.rand(1, 1, 8, 8))


def test_joined_checkpoint_loads_both_parts():
    segmenter, classifier = _segmenter(), presence_classifier("efficientnet-b0")
    joined = PresenceGatedSegmenter(_segmenter(), presence_classifier("efficientnet-b0"))
    joined.load_state_dict(gated_state_dict(segmenter.state_dict(), classifier.state_dict()))
    torch.testing.assert_close(joined.segmenter.weight, segmenter.weight)
    torch.testing.assert_close(joined.classifier._fc.weight, classifier._fc.weight)


def test_mask_to_presence():
    mask = torch.zeros(2, 8, 8)
    mask[1, 3, 3] = 0.2  # a soft target still marks the structure present
    assert MaskToPresence()(mask).tolist() == [0.0, 1.0]
    data = MaskToPresenced(keys="label")({"image": torch.ones(1, 8, 8), "label": mask[1:]})
    assert data["label"].tolist() == [1.0] and data["image"].shape == (1, 8, 8)
    with pytest.raises(ValueError, match="channel-first mask"):
        MaskToPresence()(torch.zeros(8))
