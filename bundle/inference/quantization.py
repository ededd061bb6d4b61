"""Int8 post-training quantization of a checkpoint's OpenVINO model with NNCF, kept only where Dice holds.

:func:`quantize_checkpoint` calibrates the float32 model that the OpenVINO backend runs for the checkpoint on a
labelled split's images, as the live path gives them to the network, then scores the float32 and the int8 model
through that same path (:class:`~.streaming.StreamingSegmenter`: resize, network, threshold, rules, Dice at each
label's size). The int8 model is kept beside the float32 one (:func:`~.openvino_cache.quantized_entry`) and run by
``inference_precision: "int8"`` only when its mean Dice is at most ``tolerance`` below float32's; otherwise only
the record and its reason are kept, and ``"int8"`` runs float32 with that reason in a warning.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nerveseg.bundle import runs
from nerveseg.bundle.inference import openvino_cache
from nerveseg.bundle.inference.backends import BackendUnavailableError, OpenVINONetwork
from nerveseg.bundle.inference.openvino_models import CompiledModel, compile_config
from nerveseg.bundle.inference.streaming import StreamingSegmenter, labelled_frames, streaming_dice
from nerveseg.networks.profile import time_side_by_side
from nerveseg.utils.errors import UserInputError

__all__ = ["CALIBRATION_IMAGES", "DICE_TOLERANCE", "quantize_checkpoint"]

DICE_TOLERANCE = 0.005
"""The largest loss of mean Dice against float32 at which an int8 model is accepted."""

CALIBRATION_IMAGES = 300
"""The most images calibration reads (NNCF's default); all of them are scored."""


def quantize_checkpoint(
    datalist_file: str | os.PathLike,
    bundle_root: str | os.PathLike = ".",
    checkpoint: str | os.PathLike | None = None,
    configs: Sequence[str | os.PathLike] = ("configs/inference.json",),
    split: str = "validation",
    tolerance: float = DICE_TOLERANCE,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Quantize ``checkpoint``'s network to int8 on ``split``'s images, score it, and keep it if Dice holds.

    Args:
        datalist_file: the datalist whose ``split`` calibrates and scores (the checkpoint's own validation split).
        bundle_root: the bundle folder holding ``configs/``.
        checkpoint: the weights; ``None`` is inference.json's ``models/model.pt`` under ``bundle_root``.
        configs: the config stack, inference.json first; its network, size, threshold and rules are scored.
        split: the labelled split of ``datalist_file``.
        tolerance: the largest mean Dice loss against float32 that is accepted.
        overrides: config ids and values.

    Returns:
        the record kept beside the model: both models' mean Dice, the change, ``accepted`` and its ``reason``,
        network milliseconds per image of both (batch 1, median) and the speed-up.

    Raises:
        UserInputError: NNCF is not installed, the split is the test split, the inference cache is off or not
            writable, OpenVINO cannot run the network, the checkpoint changed meanwhile, or a bad checkpoint or
            datalist.
    """
    if split == "test":
        raise UserInputError(
            "split is 'test': calibrating and checking int8 on the test split would tune the model on it; use the "
            "validation split (--split validation), and keep the test split for the final score."
        )
    nncf = _nncf()
    root = Path(bundle_root).resolve()
    settings = {**(overrides or {}), "inference_backend": "openvino", "inference_precision": "float32"}
    if checkpoint is not None:
        settings["checkpoint_path"] = str(Path(checkpoint).resolve())
    parser = runs.read_config(runs.config_files(root, *configs), {"bundle_root": str(root), **settings})
    checkpoint, cache_dir = (
        parser.get_parsed_content("checkpoint_path"),
        parser.get_parsed_content("inference_cache_dir"),
    )
    if cache_dir is None:
        raise UserInputError(
            "inference_cache_dir is None, but the int8 model is kept in the OpenVINO cache beside the checkpoint; "
            "leave inference_cache_dir at its default (a folder openvino beside the checkpoint)."
        )
    record = openvino_cache.checkpoint_record(checkpoint)  # before the weights are read: what the model is made from
    segmenter = StreamingSegmenter.from_bundle(root, checkpoint, configs, overrides=settings)
    name = type(segmenter.network).__name__
    pairs = labelled_frames(datalist_file, split)
    inputs = [segmenter.network_input(frame).clone() for frame, _ in pairs]  # clones: tensors the converter traces
    entry = openvino_cache.quantized_entry(
        openvino_cache.entry_path(cache_dir, checkpoint, name, tuple(inputs[0].shape[1:]))
    )
    try:
        openvino_cache.check_writable(entry.parent)
    except OSError as error:
        raise UserInputError(
            f"Cannot write the OpenVINO cache {entry.parent} ({error.strerror or error}), where the int8 model is "
            "kept: make it writable, or set inference_cache_dir to a writable folder."
        ) from None
    runtime = OpenVINONetwork(segmenter.network, torch.float32, checkpoint, cache_dir)
    try:
        float32_model = runtime.converted_model(inputs[0])
    except BackendUnavailableError as error:
        raise UserInputError(f"int8 runs on OpenVINO, which cannot run {name}: {runtime.refused or error}") from None
    start = time.perf_counter()
    int8_model = nncf.quantize(
        float32_model,
        nncf.Dataset(inputs, lambda images: images.numpy()),
        subset_size=min(len(inputs), CALIBRATION_IMAGES),
        target_device=nncf.TargetDevice.CPU,
    )
    quantize_seconds = time.perf_counter() - start
    models = {
        "float32": CompiledModel(float32_model, compile_config(torch.float32)),
        "int8": CompiledModel(int8_model, compile_config(torch.int8)),
    }
    dice = {name: statistics.mean(_dice(segmenter, model, pairs)) for name, model in models.items()}
    timings = time_side_by_side({name: functools.partial(model, inputs[0]) for name, model in models.items()}, 20)
    milliseconds = {name: 1e3 * timing["median"] for name, timing in timings.items()}
    change = dice["int8"] - dice["float32"]
    accepted = change >= -tolerance
    reason = (
        f"mean Dice {dice['int8']:.4f} against float32's {dice['float32']:.4f} on {len(pairs)} {split} images, a "
        f"change of {change:+.4f}, {'within' if accepted else 'beyond'} the tolerance {tolerance}."
    )
    if openvino_cache.checkpoint_record(checkpoint) != record:
        raise UserInputError(
            f"{checkpoint} changed while it was quantized (is a training still writing it?); run nerveseg quantize "
            "again once it is final."
        )
    record = {
        **record,
        "accepted": accepted,
        "reason": reason,
        "datalist_file": str(Path(datalist_file).resolve()),
        "split": split,
        "images": len(pairs),
        "dice_float32": dice["float32"],
        "dice_int8": dice["int8"],
        "dice_change": change,
        "tolerance": tolerance,
        "network_ms_float32": milliseconds["float32"],
        "network_ms_int8": milliseconds["int8"],
        "speedup": milliseconds["float32"] / milliseconds["int8"],
        "threads": torch.get_num_threads(),
        "quantize_s": quantize_seconds,
        "nncf": nncf.__version__,
        "entry": str(entry),
    }
    openvino_cache.save_entry(int8_model if accepted else None, entry, record)
    if not (entry / "conversion.json").is_file():  # save_entry logs a failed write and goes on; here it is the result
        raise UserInputError(f"Could not write {entry} (see the warning above); free space there and run it again.")
    return record


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as error:
        raise UserInputError(
            f"int8 quantization needs NNCF ({error}); install it with pip install -e '.[int8]'."
        ) from None
    return nncf


def _dice(segmenter: StreamingSegmenter, model: CompiledModel, pairs: Sequence[Any]) -> list[float]:
    """``segmenter``'s Dice on ``pairs`` with its inferer's network calls run by ``model``."""
    accelerated = segmenter.inferer
    inner = getattr(accelerated, "inferer", accelerated)  # the configured inferer inside AcceleratedInferer
    segmenter.inferer = lambda images, network: inner(images, model)
    try:
        return streaming_dice(segmenter, pairs)
    finally:
        segmenter.inferer = accelerated
