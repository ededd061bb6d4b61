"""The execution paths a network is timed on (eager, channels-last, bfloat16, OpenVINO, ``torch.compile``, ONNX
Runtime), and which of them configs/inference.json selects on this machine."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import SimpleInferer
from torch import nn

from nerveseg.bundle.inference.accelerated import AcceleratedInferer, resolve_precision
from nerveseg.bundle.inference.backends import resolve_backend
from nerveseg.bundle.runs import config_files, read_config
from nerveseg.utils.errors import UserInputError

__all__ = [
    "PATHS",
    "compiled_call",
    "default_path",
    "inference_settings",
    "onnx_session",
    "path_call",
]

PATHS = {
    "eager fp32": {"backend": "torch", "precision": "float32", "channels_last": False},
    "channels_last fp32": {"backend": "torch", "precision": "float32", "channels_last": True},
    "bf16 autocast": {"backend": "torch", "precision": "bfloat16", "channels_last": False},
    "channels_last + bf16": {"backend": "torch", "precision": "bfloat16", "channels_last": True},
    "openvino fp32": {"backend": "openvino", "precision": "float32", "channels_last": False},
    "openvino bf16": {"backend": "openvino", "precision": "bfloat16", "channels_last": False},
}
"""The execution paths every network is timed on, as :class:`AcceleratedInferer` settings (OpenVINO converts in
memory, no cache folder; ``latency.timed_paths`` leaves out the paths this machine cannot run)."""


def inference_settings(bundle_root: str | os.PathLike) -> dict[str, Any]:
    """configs/inference.json's ``inference_precision``, ``channels_last`` and ``inference_backend``, as
    :class:`AcceleratedInferer` takes them (without a cache folder: OpenVINO converts in memory)."""
    parser = read_config(config_files(bundle_root, "configs/inference.json"))
    return {
        "precision": parser["inference_precision"],
        "channels_last": bool(parser["channels_last"]),
        "backend": parser["inference_backend"],
    }


def default_path(bundle_root: str | os.PathLike) -> dict[str, Any]:
    """The execution path configs/inference.json selects on this machine's CPU, and its name in :data:`PATHS`."""
    settings = inference_settings(bundle_root)
    backend, precision = resolve_backend(settings["backend"], "cpu"), resolve_precision(settings["precision"], "cpu")
    channels_last = settings["channels_last"] and backend == "torch"
    name = next(
        (
            n
            for n, p in PATHS.items()
            if (p["backend"], resolve_precision(p["precision"], "cpu"), p["channels_last"])
            == (backend, precision, channels_last)
        ),
        None,
    )
    if name is None:
        raise UserInputError(
            f"inference.json's path ({backend}, {precision}, channels_last={channels_last}) is not one of "
            f"{list(PATHS)}."
        )
    return {
        "name": name,
        "backend": backend,
        "precision": str(precision).removeprefix("torch."),
        "channels_last": channels_last,
    }


def path_call(network: nn.Module, images: torch.Tensor, path: str) -> Callable[[], torch.Tensor]:
    """A no-argument call of ``network`` on ``images`` through one execution path (on its own copy)."""
    inferer = AcceleratedInferer(SimpleInferer(), **PATHS[path])
    own = copy.deepcopy(network)
    return lambda: inferer(images, own)


def compiled_call(network: nn.Module, images: torch.Tensor) -> tuple[Callable[[], torch.Tensor], float]:
    """``torch.compile`` (inductor) of the channels-last bf16 path; returns the call and the compile seconds."""
    inferer = AcceleratedInferer(SimpleInferer(), precision="bfloat16", channels_last=True)
    compiled = torch.compile(copy.deepcopy(network).to(memory_format=torch.channels_last))
    start = time.perf_counter()
    with torch.inference_mode():
        inferer(images, compiled)
    return (lambda: inferer(images, compiled)), time.perf_counter() - start


def onnx_session(
    files: Sequence[str], overrides: Mapping[str, Any], network: nn.Module, size: tuple[int, int], folder: Path
) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """ONNX Runtime (CPU, float32) of ``network`` exported by ``monai.bundle onnx_export`` (traced, any batch size).

    Returns the run function and the export seconds. The export is traced at ``size``, which the graph keeps.
    """
    import onnxruntime
    from monai.bundle import onnx_export

    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        weights, model = Path(scratch) / "model.pt", Path(scratch) / "model.onnx"
        torch.save(network.state_dict(), weights)
        start = time.perf_counter()
        onnx_export(
            net_id="network_def",
            filepath=str(model),
            ckpt_file=str(weights),
            config_file=list(files),
            use_trace=True,
            input_shape=[1, 1, *size],
            converter_kwargs={
                "dynamo": False,
                "input_names": ["image"],
                "output_names": ["logits"],
                "dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}},
            },
            **overrides,
        )
        export_s = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Planned and pooled buffers would hold the largest networks' batch-8 activations (>20 GiB) between runs.
        options.enable_cpu_mem_arena, options.enable_mem_pattern = False, False
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return (lambda images: torch.from_numpy(session.run(None, {"image": images.numpy()})[0])), export_s
