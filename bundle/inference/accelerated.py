"""The fast path of evaluation and inference: another inferer's network calls in channels-last order under
reduced-precision autocast, or on OpenVINO.

:class:`AcceleratedInferer` wraps any inferer (single view, flip TTA, ASME from :mod:`.inferers`)
and changes only how the network is called; :func:`resolve_precision` says which precision ``"auto"`` means on a
device, and :mod:`.backends` runs the OpenVINO backend.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SimpleInferer
from torch import nn

from nerveseg.bundle.inference.backends import (
    OpenVINONetwork,
    backend_forward,
    check_backend,
    check_cache,
    float_precision_name,
    resolve_backend,
)
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY
from nerveseg.utils.errors import UserInputError

__all__ = ["PRECISIONS", "AcceleratedInferer", "resolve_precision"]


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.int8}
"""The compute precisions of :class:`AcceleratedInferer`, besides ``"auto"``. ``"int8"`` is OpenVINO's only: the
int8 model ``nerveseg quantize`` accepted for the checkpoint (float32 where there is none, and on the torch path)."""


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype ``precision`` names on ``device``; ``"auto"`` is bfloat16 where the device computes it natively.

    Native bfloat16 means a CUDA device that reports it (Ampere and newer) or a CPU whose flags in /proc/cpuinfo
    show AVX512-BF16 or AMX; elsewhere (other CPUs, or no /proc/cpuinfo to read) ``"auto"`` is float32, because
    emulated bfloat16 can be slower than float32.

    Raises:
        ValueError: ``precision`` is not ``"auto"`` or a key of :data:`PRECISIONS`.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise UserInputError(f"Unknown precision {precision!r}; choose 'auto' or one of {list(PRECISIONS)}.")
        return PRECISIONS[precision]
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_bf16()
    return torch.bfloat16 if native else torch.float32


@functools.cache
def _cpu_has_bf16() -> bool:
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


class AcceleratedInferer(Inferer):
    """Another inferer's forward passes on a faster path: channels-last and autocast in torch, or OpenVINO.

    With ``backend="torch"`` each network call of the wrapped ``inferer`` gets its images in channels-last (NHWC)
    order and runs under ``torch.autocast`` at ``precision``; its logits come back as float32 with their metadata.
    On a 2-core CPU with native bfloat16 this ran the EfficientNet and ResNet networks 2.4 to 3.5 times as fast as
    eager float32, their depthwise convolutions gaining most from channels-last order; MONAI's BasicUNet and UNet++
    are faster with ``channels_last=False`` (figures: ``nerveseg bench``, docs/README.md). The network's 4D
    weights are converted to channels-last on the first torch call (in place, once; a no-op after). ``precision=
    "float32"`` with ``channels_last=False`` is exactly the wrapped inferer, the bundle's eager path.

    With ``backend="openvino"`` the network calls run on OpenVINO instead, ``precision`` its inference precision
    (:class:`~.backends.OpenVINONetwork`, converted at the first call and kept for the network the inferer is
    called with; with ``checkpoint`` and ``cache_dir``, cached beside the checkpoint for the next run);
    ``"auto"`` is OpenVINO on a CPU where it is installed, else torch, and torch for a network OpenVINO cannot
    serve (:func:`~.backends.backend_forward`).

    Only the network calls change: an ensemble's maths (masks, Dice, weights) stays in float32. Extra ``networks``
    of :class:`ASMEInferer` are called by it directly, so they run eager.

    Args:
        inferer: the inferer to accelerate; :class:`~monai.inferers.SimpleInferer` by default.
        precision: ``"auto"`` (see :func:`resolve_precision`), ``"bfloat16"``, ``"float16"``, ``"float32"`` or
            ``"int8"`` (OpenVINO: the checkpoint's quantized model, :mod:`~.quantization`).
        channels_last: run the network in channels-last memory order (torch backend).
        backend: ``"torch"``, ``"openvino"`` or ``"auto"`` (:data:`~.backends.BACKENDS`).
        checkpoint: the file the network's weights are loaded from; the OpenVINO cache's key.
        cache_dir: where OpenVINO models converted from ``checkpoint`` are kept; ``None`` converts in memory, once
            per network. The configs use a folder ``openvino`` beside the checkpoint.
        openvino: another inferer's :meth:`openvino_network` to use while the network called is its network, so
            that inferers around one network (one view and an ensemble, say) convert and compile it once; its own
            checkpoint and cache folder hold for that network. By default each inferer converts its own.

    Raises:
        UserInputError: an unknown precision or backend, or ``"openvino"`` without the openvino package.
        ValueError: ``cache_dir`` without ``checkpoint``, or an ``openvino`` of another precision.
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        backend: str = "torch",
        checkpoint: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        openvino: OpenVINONetwork | None = None,
    ) -> None:
        self.cpu_precision = resolve_precision(precision, "cpu")  # the name is checked here, the device at each call
        if openvino is not None and openvino.precision != self.cpu_precision:
            raise ValueError(
                f"openvino runs its network at {openvino.precision}, but precision {precision!r} is "
                f"{self.cpu_precision} here: share it only between inferers of the same precision."
            )
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.backend = check_backend(backend)
        self.checkpoint = checkpoint
        self.cache_dir = check_cache(checkpoint, cache_dir)
        self._openvino = openvino
        self._openvino_lock = threading.Lock()

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run the wrapped inferer on ``inputs`` with ``network``'s forward passes accelerated.

        Args:
            inputs: ``[B, C, H, W]`` images, a MetaTensor in MONAI workflows.
            network: the model, put in channels-last order at its first torch call when ``channels_last``.
            args: passed to the wrapped inferer.
            kwargs: passed to the wrapped inferer.

        Raises:
            UserInputError: ``backend="openvino"`` and the network cannot run on it; the message says what to set.
        """
        dtype = resolve_precision(self.precision, inputs.device)

        def torch_forward(images: torch.Tensor, *network_args: Any, **network_kwargs: Any) -> torch.Tensor:
            if self.channels_last and isinstance(network, nn.Module):
                _to_channels_last(network)
            if self.channels_last and images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            if dtype in (torch.float32, torch.int8):  # int8 is OpenVINO's quantized model; torch runs float32
                return network(images, *network_args, **network_kwargs)
            with torch.autocast(images.device.type, dtype=dtype):
                out = network(images, *network_args, **network_kwargs)
            return _to_float32(out)

        forward = backend_forward(self.openvino_network(network), self.backend, inputs.device, torch_forward)
        return self.inferer(inputs, forward, *args, **kwargs)

    def backend_for(self, network: Callable[..., Any], device: torch.device | str) -> str:
        """``"openvino"`` or ``"torch"``: what runs ``network`` on ``device``. The backend as it resolves there, and
        torch from the network's first call on where ``"auto"`` found that OpenVINO cannot serve it (class logits, a
        failed conversion, an unwritable cache)."""
        backend = resolve_backend(self.backend, device)
        runtime = self._openvino
        if backend == "openvino" and self.backend == "auto" and runtime is not None and runtime.network is network:
            return "torch" if runtime.refused is not None else backend
        return backend

    def execution_path(self, network: Callable[..., Any], device: torch.device | str) -> str:
        """What runs ``network`` on ``device``, as ``"openvino int8"`` or ``"torch bfloat16 channels-last"``: the
        backend :meth:`backend_for` names and the precision ``precision`` resolves to there. On OpenVINO, from the
        network's first call on, the precision its model runs at (float32 where int8 found no accepted model);
        before it, the precision asked for (float32 for int8 without a cache to hold a quantized model)."""
        backend = self.backend_for(network, device)
        runtime = self._openvino
        if backend == "openvino" and runtime is not None and runtime.network is network and runtime.runs_at:
            return f"openvino {runtime.runs_at}"
        if backend == "openvino":
            int8_readable = self.cpu_precision == torch.int8 and self.cache_dir is not None
            return f"openvino {'int8' if int8_readable else float_precision_name(self.cpu_precision)}"
        precision = float_precision_name(resolve_precision(self.precision, device))
        return f"torch {precision}{' channels-last' if self.channels_last else ''}"

    def openvino_network(self, network: Callable[..., Any]) -> OpenVINONetwork:
        """``network`` on OpenVINO, kept while the inferer is called with it: a server's requests share its models."""
        with self._openvino_lock:
            if self._openvino is None or self._openvino.network is not network:
                self._openvino = OpenVINONetwork(network, self.cpu_precision, self.checkpoint, self.cache_dir)
            return self._openvino


def _to_channels_last(network: nn.Module) -> None:
    weights = [p for p in network.parameters() if p.ndim == 4]
    if not all(w.is_contiguous(memory_format=torch.channels_last) for w in weights):
        network.to(memory_format=torch.channels_last)


def _to_float32(out: Any) -> Any:
    """Float32 copies of a network output's floating tensors (one tensor, or a list/tuple of them), metadata kept."""
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        result = out.float()
        if isinstance(out, MetaTensor) and CLASS_LOGITS_KEY in out.meta:
            result.meta[CLASS_LOGITS_KEY] = out.meta[CLASS_LOGITS_KEY].float()
        return result
    return out
