"""OpenVINO models compiled for the CPU: the precision hints, which precisions the CPU computes natively, and
:class:`CompiledModel`, which :class:`~.backends.OpenVINONetwork` and :mod:`~.quantization` run models with."""

from __future__ import annotations

import functools
import threading
from typing import Any

import torch
from monai.data import MetaTensor

__all__ = ["PRECISION_HINTS", "CompiledModel", "compile_config", "core", "openvino_supports"]

PRECISION_HINTS = {
    torch.float32: ("f32", "FP32"),
    torch.bfloat16: ("bf16", "BF16"),
    torch.float16: ("f16", "FP16"),
    torch.int8: ("f32", "INT8"),  # a quantized model: int8 where NNCF put quantizers, float32 around them
}
"""Precision to (OpenVINO's inference precision hint, the CPU capability that computes it natively)."""
BATCH_SIZES_COMPILED = 4
"""Batch sizes a :class:`CompiledModel` keeps compiled at once; the least recently used goes first."""


@functools.cache
def core() -> Any:
    """The process's OpenVINO runtime."""
    import openvino

    return openvino.Core()


def compile_config(precision: torch.dtype) -> dict[str, Any]:
    """The CPU compile settings of every model: ``precision``'s inference hint, torch's thread count, latency mode."""
    return {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision][0],
        "PERFORMANCE_HINT": "LATENCY",
    }


class CompiledModel:
    """An OpenVINO model, compiled for each batch size it is called with (static shapes), each with one infer
    request that is reused: on a 2-core CPU a dynamic batch and a new request per call cost 30-50% more where the
    batch size changes from call to call, as in ASME's early stop.

    Args:
        model: an ``openvino.Model`` (any batch size).
        config: the compile settings, :func:`compile_config`.
    """

    def __init__(self, model: Any, config: dict[str, Any]) -> None:
        self.model, self.config = model, config
        self.by_batch: dict[int, tuple[Any, Any, threading.Lock]] = {}
        self.lock = threading.Lock()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The float32 logits of ``[B, C, H, W]`` ``images`` on their device (a MetaTensor keeps its metadata)."""
        plain = (images.as_tensor() if isinstance(images, MetaTensor) else images).detach()
        logits = torch.from_numpy(self.infer(plain.to("cpu", torch.float32).contiguous().numpy())).to(images.device)
        return MetaTensor(logits).copy_meta_from(images) if isinstance(images, MetaTensor) else logits

    def infer(self, array: Any) -> Any:
        """The logits of a ``[B, C, H, W]`` float32 array, as a new array."""
        batch = array.shape[0]
        with self.lock:
            if batch not in self.by_batch:
                static = self.model.clone()
                static.reshape([batch, *array.shape[1:]])
                compiled = core().compile_model(static, "CPU", self.config)
                self.by_batch[batch] = (compiled, compiled.create_infer_request(), threading.Lock())
                while len(self.by_batch) > BATCH_SIZES_COMPILED:  # the least recently used goes
                    del self.by_batch[next(iter(self.by_batch))]
            compiled, request, busy = self.by_batch.pop(batch)
            self.by_batch[batch] = (compiled, request, busy)
        if not busy.acquire(blocking=False):  # another thread's call: a request of its own
            return compiled.create_infer_request().infer({0: array}, share_outputs=False)[0]
        try:
            return request.infer({0: array}, share_outputs=False)[0]  # a copy: the request's buffer is reused
        finally:
            busy.release()


def openvino_supports(precision: torch.dtype) -> bool:
    """Whether OpenVINO computes ``precision`` natively on this CPU (float32 always, bfloat16 with AVX512-BF16/AMX)."""
    if precision == torch.float32:
        return True
    return precision in PRECISION_HINTS and PRECISION_HINTS[precision][1] in core().get_property(
        "CPU", "OPTIMIZATION_CAPABILITIES"
    )
