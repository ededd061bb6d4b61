"""The streaming segmenter: inference.json's masks one frame at a time, its smoothing and its refusals."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch
from monai.transforms import Compose, Resize
from PIL import Image
from torch import nn

from conftest import BUNDLE_ROOT, TINY_NETWORK, tiny_checkpoint
from nerveseg.bundle import runs
from nerveseg.bundle.inference.accelerated import AcceleratedInferer
from nerveseg.bundle.inference.streaming import AntiAliasedResize, StreamingSegmenter
from nerveseg.utils.class_logits import with_class_logits
from nerveseg.utils.errors import UserInputError

OVERRIDES = {  # the eager float32 path, which the reference below takes
    "network_def": TINY_NETWORK,
    "inference_backend": "torch",
    "inference_precision": "float32",
    "channels_last": False,
    "min_component": 30,
    "min_area": 60,
}


def frames(count: int, shape=(64, 88)) -> list[np.ndarray]:
    """Grayscale frames with a bright blob that moves, as a probe would see a nerve."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    out = []
    for i in range(count):
        blob = np.exp(-((rows - 15 - i) ** 2 + (cols - 20 - 2 * i) ** 2) / 60.0)
        noise = np.random.default_rng(i).normal(0, 0.05, shape)
        out.append(np.clip(255 * (0.2 + 0.7 * blob + noise), 0, 255).astype(np.uint8))
    return out


@pytest.fixture
def checkpoint(tmp_path):
    """The tiny network's ``models/model.pt``, trained (so says training_settings.json) at 32x48."""
    return tiny_checkpoint(tmp_path / "models", [32, 48])


def inference_json_masks(checkpoint, images: list[np.ndarray], folder) -> list[np.ndarray]:
    """The masks inference.json's own transforms give for ``images`` saved as PNG files, at 32x48."""
    parser = runs.read_config(
        runs.config_files(BUNDLE_ROOT, "configs/inference.json"),
        {**OVERRIDES, "image_size": [32, 48], "checkpoint_path": str(checkpoint)},
    )
    network = parser.get_parsed_content("network").eval()
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    post = Compose(parser.get_parsed_content("probability_transforms") + parser.get_parsed_content("mask_transforms"))
    masks = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
        data = parser.get_parsed_content("preprocessing")({"image": str(folder / f"{i}.png")})
        with torch.no_grad():
            data["pred"] = decollate_batch(network(data["image"][None]))[0]
        masks.append(np.asarray(post(data)["pred"][0], dtype=bool))
    return masks


def test_each_frame_gets_inference_jsons_mask_at_the_trained_size(checkpoint, tmp_path):
    images = frames(4)
    segmenter = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    assert segmenter.image_size == (32, 48)  # read beside the checkpoint
    masks = [segmenter(image) for image in images]
    expected = inference_json_masks(checkpoint, images, tmp_path)
    assert all(m.dtype == bool and m.shape == (64, 88) for m in masks)
    assert 0 < sum(m.sum() for m in expected) < sum(m.size for m in expected)  # masks neither all empty nor full
    for mask, reference in zip(masks, expected, strict=True):
        np.testing.assert_array_equal(mask, reference)


@pytest.mark.parametrize(
    "frame_size, size",
    [((420, 580), (224, 288)), ((64, 88), (32, 48)), ((20, 40), (32, 16)), ((16, 16), (32, 48)), ((32, 48), (32, 48))],
    ids=["challenge frame", "both shrink", "one grows", "both grow", "same size"],
)
def test_the_frame_resize_gives_monais_anti_aliased_resize(frame_size, size):
    image = torch.rand(2, *frame_size, generator=torch.Generator().manual_seed(0))  # two channels: any C
    resize = AntiAliasedResize(size)
    expected = Resize(size, mode="bilinear", anti_aliasing=True)(image)
    for given in (image, image, image.double()):  # the second call reuses the kernels; float64 is computed in float32
        resized = resize(given)
        assert isinstance(resized, MetaTensor) and resized.shape == (2, *size) and resized.dtype == torch.float32
        torch.testing.assert_close(resized.as_tensor(), expected.as_tensor(), rtol=0, atol=1e-6)


def test_smoothing_averages_the_probabilities_and_restarts_on_reset(checkpoint):
    images = frames(3)
    plain = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    smooth = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, smoothing=0.9, overrides=OVERRIDES)
    first = smooth(images[0])
    np.testing.assert_array_equal(first, plain(images[0]))  # nothing to average yet
    assert smooth(images[2]).sum() != plain(images[2]).sum()  # mostly the first frame's probabilities
    smooth.reset()
    np.testing.assert_array_equal(smooth(images[2]), plain(images[2]))
    np.testing.assert_array_equal(smooth(frames(1, shape=(30, 36))[0]), plain(frames(1, shape=(30, 36))[0]))


class Presence(nn.Module):
    """Mask logits everywhere high, and a presence logit that says "absent" for dark frames."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = x.as_tensor() if isinstance(x, MetaTensor) else x
        presence = 20 * (plain.mean(dim=(1, 2, 3)) - 0.5)
        return with_class_logits(torch.full_like(plain, 5.0), torch.stack([presence, -presence], 1), x)


class RecordingOpenVINO:
    """An inferer that says OpenVINO runs it and records torch's thread count at each network call, and in
    ``in_flight`` (which inferers may share) the most network calls running at once."""

    backend = "openvino"

    def __init__(self, in_flight: dict[str, int] | None = None) -> None:
        self.threads: list[int] = []
        self.in_flight = {"now": 0, "most": 0} if in_flight is None else in_flight

    def __call__(self, images: torch.Tensor, network: nn.Module) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        self.in_flight["now"] += 1
        self.in_flight["most"] = max(self.in_flight["most"], self.in_flight["now"])
        try:
            time.sleep(0.001)  # long enough for the other thread to come in, were it let
            return network(images)
        finally:
            self.in_flight["now"] -= 1


def test_on_openvino_its_own_steps_run_on_one_thread_and_the_network_on_torchs_count(checkpoint):
    plain = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    inferer = RecordingOpenVINO()
    segmenter = StreamingSegmenter(plain.network, inferer, plain.image_size, min_component=30, min_area=60)
    step_threads = []
    resize = segmenter.resize
    segmenter.resize = lambda image: step_threads.append(torch.get_num_threads()) or resize(image)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        images = frames(2)
        masks = [segmenter(image) for image in images]
        assert (segmenter.backend, plain.backend) == ("openvino", "torch")
        assert step_threads == [1, 1] and inferer.threads == [2, 2] and torch.get_num_threads() == 2
        for mask, reference in zip(masks, [plain(image) for image in images], strict=True):
            np.testing.assert_array_equal(mask, reference)
    finally:
        torch.set_num_threads(threads)


def test_segmenters_on_openvino_in_two_threads_take_turns_and_keep_torchs_thread_count(checkpoint):
    plain = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    in_flight = {"now": 0, "most": 0}
    inferers = [RecordingOpenVINO(in_flight), RecordingOpenVINO(in_flight)]
    segmenters = [StreamingSegmenter(plain.network, inferer, plain.image_size) for inferer in inferers]
    images = frames(40, shape=(240, 320))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        workers = [threading.Thread(target=lambda s=s: [s(image) for image in images]) for s in segmenters]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert [inferer.threads for inferer in inferers] == [[2] * 40, [2] * 40]
        assert torch.get_num_threads() == 2 and in_flight["most"] == 1
    finally:
        torch.set_num_threads(threads)


def test_a_refused_frame_on_openvino_leaves_torchs_thread_count_and_the_next_frame_runs(checkpoint):
    plain = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    segmenter = StreamingSegmenter(plain.network, RecordingOpenVINO(), plain.image_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(UserInputError, match="grayscale"):
            segmenter(np.zeros((64, 88, 3), np.uint8))
        assert torch.get_num_threads() == 2
        assert segmenter(frames(1)[0]).shape == (64, 88)  # the turn was given back
    finally:
        torch.set_num_threads(threads)


def test_the_presence_gate_empties_a_frame_whose_structure_is_absent():
    segmenter = StreamingSegmenter(Presence(), lambda images, network: network(images), (16, 16), gate_threshold=0.5)
    assert segmenter(np.full((20, 20), 250, np.uint8)).all()
    assert not segmenter(np.full((20, 20), 10, np.uint8)).any()


def test_a_network_openvino_cannot_serve_reports_torch_from_its_first_frame_under_auto():
    pytest.importorskip("openvino", reason="the openvino backend needs the openvino package, a dependency")
    inferer = AcceleratedInferer(precision="float32", channels_last=False, backend="auto")
    segmenter = StreamingSegmenter(Presence(), inferer, (16, 16), gate_threshold=0.5)
    assert segmenter.backend == "openvino"  # what auto resolves to on a CPU, before the network is seen
    assert segmenter(np.full((20, 20), 250, np.uint8)).all()
    assert segmenter.backend == "torch"  # the class logits kept it on torch, as the live summary must say
    assert not segmenter(np.full((20, 20), 10, np.uint8)).any()


def test_bad_frames_and_settings_are_refused(checkpoint):
    segmenter = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    with pytest.raises(UserInputError, match=r"one \[H, W\] grayscale image, got shape \(64, 88, 3\); convert"):
        segmenter(np.zeros((64, 88, 3), np.uint8))
    with pytest.raises(UserInputError, match=r"smoothing must be in \[0, 1\)"):
        StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, smoothing=1.0, overrides=OVERRIDES)
    with pytest.raises(UserInputError, match="no such checkpoint"):
        StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint.with_name("missing.pt"), overrides=OVERRIDES)
    checkpoint.with_name("training_settings.json").write_text("{not json")
    with pytest.raises(UserInputError, match=r"training_settings\.json: unreadable .* delete it to skip this check"):
        StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
