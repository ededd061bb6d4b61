"""Segment a video's frames one at a time as they come: the live path beside a scanner.

:class:`StreamingSegmenter` runs inference.json's steps on one decoded frame, without a data loader or dictionary
transforms: scale to [0, 1], resize to the trained size (anti-aliased, the numbers of inference.json's ``Resized``),
the network through the configured inferer (OpenVINO under ``inference_backend: auto`` where it is installed),
sigmoid, the presence gate, resize back, threshold, the ``min_component`` and ``min_area`` rules. The input
buffer is kept between frames of one size. :meth:`StreamingSegmenter.from_bundle` builds it from the configs and
a checkpoint, at the size the checkpoint was trained at.

Where OpenVINO runs the network, the segmenter's own torch steps run on one thread: torch's OpenMP workers keep
spinning after each step and take a core from OpenVINO's threads, which on a 2-core CPU put configs/live.json's 99th
percentile at 36.0 ms against 13.7 ms on one thread (docs/live/live_0.15.0_trained.md). Torch's thread count is
shared by the process's threads, so segmenters on OpenVINO take turns, a frame at a time: one frame's steps cannot
leave another's network at one thread, and two networks at once would only contend for the same cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor, decollate_batch
from monai.inferers import Inferer
from monai.networks.layers import GaussianFilter
from monai.networks.layers.convutils import gaussian_1d
from PIL import Image
from torch import nn

from nerveseg.bundle import runs
from nerveseg.bundle.data.datalist import labelled_items, load_datalist_file
from nerveseg.bundle.data.io import read_mask
from nerveseg.bundle.inference.backends import resolve_backend
from nerveseg.bundle.metrics import image_scores
from nerveseg.bundle.settings import check_image_size
from nerveseg.bundle.trained_settings import check_checkpoint, read_trained_settings
from nerveseg.transforms.postprocessing import EmptySmallMask, PresenceGate, RemoveSmallComponents
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import read_state_dict

__all__ = ["AntiAliasedResize", "StreamingSegmenter", "frame_and_label", "labelled_frames", "streaming_dice"]

_OPENVINO_TURN = threading.Lock()
"""Held for each frame a segmenter gives OpenVINO: its steps set torch's process-wide thread count to 1."""


class StreamingSegmenter:
    """Segment grayscale frames one at a time: ``mask = segmenter(frame)``, a boolean ``[H, W]`` array.

    Each call gives the mask inference.json gives for the frame saved as an image (the same resize, network,
    probability, threshold and rules), so a model evaluated on still images behaves the same on a video.

    With ``smoothing`` ``s > 0`` the probabilities at the network's size are averaged over frames, ``s`` times the
    previous average plus ``1 - s`` times this frame's, which steadies an outline on a slowly moving probe; a frame
    of another size, or :meth:`reset`, starts the average again.

    Args:
        network: the trained network, weights loaded; put in eval mode.
        inferer: how the network is called (inference.json's ``inferer``: the fast path and backend).
        image_size: ``(H, W)`` the network was trained at.
        threshold: probability at or above which a pixel is the structure (MONAI's ``AsDiscrete``).
        min_component: connected components smaller than this many pixels (at the frame's size) are removed.
        min_area: a mask smaller than this many pixels in all is emptied.
        gate_threshold: the presence gate of networks that give class logits (0: off).
        smoothing: the weight of the previous frames' probabilities, in ``[0, 1)``; 0 is off.

    Attributes:
        backend: ``"openvino"`` or ``"torch"``, what runs the network: the inferer's configured backend as it
            resolves on the network's device, and ``"torch"`` from the first frame on where ``auto`` found that
            OpenVINO cannot serve the network (class logits, a failed conversion, an unwritable cache; one warning
            says why).
        execution_path: what runs the network, backend and precision: ``"openvino bfloat16"``, ``"openvino
            int8"``, ``"torch float32"``; after the first frame, what ran (float32 where int8 has no accepted model).

    Raises:
        UserInputError: a setting out of range, or an inferer backend that is unknown or not installed.
    """

    def __init__(
        self,
        network: nn.Module,
        inferer: Inferer | Callable[..., torch.Tensor],
        image_size: Sequence[int],
        threshold: float = 0.5,
        min_component: int = 0,
        min_area: int = 0,
        gate_threshold: float = 0.0,
        smoothing: float = 0.0,
    ) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise UserInputError(f"smoothing must be in [0, 1) (0: off), got {smoothing}.")
        if len(image_size) != 2:
            raise UserInputError(f"image_size must be (H, W), got {list(image_size)}.")
        self.network = network.eval()
        self.device = next((p.device for p in network.parameters()), torch.device("cpu"))
        self.inferer = inferer
        self._configured_backend = resolve_backend(getattr(inferer, "backend", "torch"), self.device)
        self.image_size = tuple(int(side) for side in image_size)
        self.threshold = float(threshold)
        self.smoothing = float(smoothing)
        self.resize = AntiAliasedResize(self.image_size)
        self.remove_small = RemoveSmallComponents(int(min_component))
        self.empty_small = EmptySmallMask(int(min_area))
        self.gate = PresenceGate(gate_threshold)
        self._frame: torch.Tensor | None = None  # the input buffer, [1, H, W] float32
        self._average: torch.Tensor | None = None

    @classmethod
    def from_bundle(
        cls,
        bundle_root: str | os.PathLike = ".",
        checkpoint: str | os.PathLike | None = None,
        configs: Sequence[str | os.PathLike] = ("configs/inference.json",),
        smoothing: float = 0.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> StreamingSegmenter:
        """The segmenter of inference.json (and ``configs`` stacked on it) with ``checkpoint``'s weights.

        The image size is the one recorded beside the checkpoint (``training_settings.json``) unless ``overrides``
        set ``image_size``; the network, inferer, threshold and rules are the configs'. The checkpoint is checked
        against the network and size as inference checks it.

        Args:
            bundle_root: the bundle folder holding ``configs/``.
            checkpoint: the weights; ``None`` is inference.json's ``models/model.pt`` under ``bundle_root``.
            configs: the config stack, inference.json first.
            smoothing: see the class.
            overrides: config ids and values, e.g. ``{"inference_backend": "torch"}``.

        Raises:
            UserInputError: a missing or mismatched checkpoint, or a bad setting.
        """
        root = Path(bundle_root).resolve()
        settings = dict(overrides or {})
        settings.setdefault("bundle_root", str(root))
        if checkpoint is not None:
            settings["checkpoint_path"] = str(Path(checkpoint).resolve())
        parser = runs.read_config(runs.config_files(root, *configs), settings)
        checkpoint = Path(parser.get_parsed_content("checkpoint_path"))
        trained = read_trained_settings(checkpoint) if checkpoint.is_file() else None
        if "image_size" not in settings and trained is not None:
            parser["image_size"] = trained["image_size"]
        network, image_size = parser.get_parsed_content("network"), parser.get_parsed_content("image_size")
        check_checkpoint(checkpoint, network, image_size)
        check_image_size(network, image_size)
        device = parser.get_parsed_content("device")
        network.load_state_dict({k: v.to(device) for k, v in read_state_dict(checkpoint).items()})
        return cls(
            network,
            parser.get_parsed_content("inferer"),
            image_size,
            threshold=parser.get_parsed_content("threshold"),
            min_component=parser.get_parsed_content("min_component"),
            min_area=parser.get_parsed_content("min_area"),
            gate_threshold=parser.get_parsed_content("gate_threshold"),
            smoothing=smoothing,
        )

    @property
    def backend(self) -> str:
        """See the class's attributes."""
        backend_for = getattr(self.inferer, "backend_for", None)  # AcceleratedInferer's: it knows what ran
        return backend_for(self.network, self.device) if backend_for is not None else self._configured_backend

    @property
    def execution_path(self) -> str:
        """See the class's attributes."""
        execution_path = getattr(self.inferer, "execution_path", None)  # AcceleratedInferer's
        return execution_path(self.network, self.device) if execution_path is not None else f"{self.backend} float32"

    def reset(self) -> None:
        """Forget the previous frames (a new video or probe position): smoothing starts again."""
        self._average = None

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The boolean ``[H, W]`` mask of one ``[H, W]`` grayscale frame (uint8, or float in [0, 255]).

        Raises:
            UserInputError: a frame that is not one 2D grayscale image.
        """
        if self.backend != "openvino":
            return self._segment(frame, on_openvino=False)
        with _OPENVINO_TURN:
            return self._segment(frame, on_openvino=True)

    def _segment(self, frame: np.ndarray, on_openvino: bool) -> np.ndarray:
        """:meth:`__call__`'s mask, without taking a turn."""
        with self._torch_steps_on_one_thread(on_openvino):
            images = self.network_input(frame)
        logits = self.inferer(images, self.network)
        with self._torch_steps_on_one_thread(on_openvino):
            probability = torch.sigmoid(logits)
            probability = (
                self.gate(decollate_batch(probability)[0]) if self.gate.threshold else probability[0]
            ).float()
            probability = probability.cpu()
            if self.smoothing:
                if self._average is not None and self._average.shape == probability.shape:
                    probability = self._average.mul_(self.smoothing).add_(probability, alpha=1.0 - self.smoothing)
                self._average = probability
            probability = F.interpolate(probability[None], size=frame.shape, mode="bilinear")[0]
            mask = self.empty_small(self.remove_small(probability >= self.threshold))
            return np.asarray(mask[0], dtype=bool)

    @torch.inference_mode()
    def network_input(self, frame: np.ndarray) -> torch.Tensor:
        """The ``[1, 1, H, W]`` network input of one ``[H, W]`` grayscale frame: scaled to [0, 1], resized to the
        trained size, on the network's device.

        Raises:
            UserInputError: a frame that is not one 2D grayscale image.
        """
        if frame.ndim != 2:
            raise UserInputError(
                f"a frame must be one [H, W] grayscale image, got shape {tuple(frame.shape)}; convert colour frames "
                "to grayscale first (nerveseg live reads them as grayscale)."
            )
        return self.resize(self._scaled(frame))[None].to(self.device)

    @contextmanager
    def _torch_steps_on_one_thread(self, on_openvino: bool) -> Iterator[None]:
        """Run the segmenter's torch steps on one thread where OpenVINO runs the network (see the module)."""
        if not on_openvino:
            yield
            return
        threads = torch.get_num_threads()  # restored before the network: OpenVINO compiles for torch's count
        try:
            torch.set_num_threads(1)
            yield
        finally:
            torch.set_num_threads(threads)

    def _scaled(self, frame: np.ndarray) -> torch.Tensor:
        """``[1, H, W]`` float32 of ``frame`` / 255 (inference.json's intensity range), in the kept buffer."""
        shape = (1, *frame.shape)
        if self._frame is None or tuple(self._frame.shape) != shape:
            self._frame = torch.empty(shape, dtype=torch.float32)
            self.reset()
        self._frame[0].numpy()[...] = frame  # converted in place: a decoder's read-only array is not wrapped
        return self._frame.mul_(1.0 / 255.0).clamp_(0.0, 1.0)


class AntiAliasedResize:
    """MONAI's ``Resize(size, mode="bilinear", anti_aliasing=True)`` of a ``[C, H, W]`` image (computed in float32,
    as Resize computes it), the same numbers made faster for a frame loop: the Gaussian kernels are made once per
    input size and applied as weighted sums of shifted slices. Resize's convolutions took 4.3-5.1 ms per 580x420
    frame (to 224x288) on one thread of a 2-core AVX512-BF16 CPU; this takes 0.6 ms.
    """

    def __init__(self, size: Sequence[int]) -> None:
        self.size = tuple(int(side) for side in size)
        self._kernels: dict[tuple[int, ...], list[list[float]] | None] = {}

    def __call__(self, image: torch.Tensor) -> MetaTensor:
        """``image`` smoothed where it shrinks, then resized bilinearly: a float32 MetaTensor, as Resize gives it
        (networks with a presence output attach their class logits to its metadata), without Resize's affine and
        applied operations, which the live path does not read."""
        image = torch.as_tensor(image, dtype=torch.float32)
        shape = tuple(image.shape[1:])
        if shape not in self._kernels:
            self._kernels[shape] = self._antialiasing_kernels(shape)
        for axis, kernel in enumerate(self._kernels[shape] or [], start=1):
            radius, length = (len(kernel) - 1) // 2, image.shape[axis]
            padded = F.pad(image, [0, 0] * (image.ndim - 1 - axis) + [radius, radius])  # zeros, as MONAI pads
            smoothed = padded.narrow(axis, 0, length) * kernel[0]
            for offset, weight in enumerate(kernel[1:], start=1):
                smoothed.add_(padded.narrow(axis, offset, length), alpha=weight)
            image = smoothed
        return MetaTensor(F.interpolate(image[None], size=self.size, mode="bilinear")[0])

    def _antialiasing_kernels(self, shape: tuple[int, ...]) -> list[list[float]] | None:
        """Resize's Gaussian kernel per axis for an input of ``shape``: sigma (shrink factor - 1) / 2 (0 where the
        axis does not shrink), as skimage; ``None`` where no axis shrinks (no smoothing)."""
        if not any(out < side for out, side in zip(self.size, shape, strict=True)):
            return None
        factors = torch.div(torch.Tensor(list(shape)), torch.Tensor(self.size))  # Resize's float32 arithmetic
        smoothing = GaussianFilter(len(shape), torch.clamp((factors - 1) / 2, min=0).tolist())  # GaussianSmooth's
        return [
            gaussian_1d(s, truncated=smoothing.truncated, approx=smoothing.approx).tolist() for s in smoothing.sigma
        ]


def labelled_frames(datalist_file: str | os.PathLike, split: str = "validation") -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(frame, label)`` pairs of a datalist split's labelled images (:func:`frame_and_label`).

    Raises:
        DatasetError: the datalist, an image or a mask cannot be read, or a mask is not binary.
        UserInputError: the datalist has no such split, or the split has no labelled image.
    """
    datalist = load_datalist_file(datalist_file)
    if split not in datalist:
        raise UserInputError(
            f"{datalist_file} has no {split!r} split (it has {sorted(datalist)}); choose one of those, or prepare the "
            "data with `nerveseg prepare`, which writes training, validation and test."
        )
    return [frame_and_label(item) for item in labelled_items(datalist, split)]


def frame_and_label(item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A datalist item's image as the live path gets it (grayscale uint8, read as inference.json reads it) and its
    binary label (:func:`~nerveseg.bundle.data.io.read_mask`), each at its own size."""
    with Image.open(item["image"]) as image:
        frame = np.asarray(image.convert("L"))
    return frame, read_mask(item["label"])


def streaming_dice(segmenter: StreamingSegmenter, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """The challenge Dice of each frame's mask against its label at the label's size (an empty mask on an empty
    label scores 1), each frame segmented alone."""
    dice = []
    for frame, label in pairs:
        segmenter.reset()
        dice.append(float(image_scores(segmenter(frame), label)["dice"]))
    return dice
