"""Inference backends: what runs the network's forward passes in evaluation and inference, PyTorch or OpenVINO.

:func:`resolve_backend` turns the configs' ``inference_backend`` into the backend that runs on a device;
:class:`OpenVINONetwork` stands in for a torch network with the OpenVINO runtime (called like the network, it
returns the same float32 logits). :class:`~.accelerated.AcceleratedInferer` chooses between them, so
every inferer it wraps (single view, flip TTA, ASME) runs on either.

The OpenVINO model is converted from the network at its first call for each input size, as MONAI's
``trt_compile`` builds its engine: the wrapper reads the network's weights then, so load the checkpoint first. With
the checkpoint named, the converted model is kept beside it (:mod:`~.openvino_cache`) and converted again only when
the checkpoint changes. Compiled models live in the wrapper, which :class:`~.accelerated.AcceleratedInferer` keeps
for its network, so a MONAI Label server compiles once per checkpoint and batch size, not once per request. With
``precision`` int8 it runs the int8 model that ``nerveseg quantize`` accepted for the checkpoint
(:mod:`~.quantization`).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import torch
from monai.data import MetaTensor
from torch import nn

from nerveseg.bundle.inference import openvino_cache
from nerveseg.bundle.inference.openvino_models import (
    PRECISION_HINTS,
    CompiledModel,
    compile_config,
    core,
    openvino_supports,
)
from nerveseg.utils.class_logits import class_logits_of
from nerveseg.utils.errors import UserInputError

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "OpenVINONetwork",
    "backend_forward",
    "check_backend",
    "check_cache",
    "openvino_available",
    "resolve_backend",
    "float_precision_name",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
"""The values of ``inference_backend``."""

_TELEMETRY_SWITCH = threading.Lock()  # the environment is the process's: one conversion changes it at a time


class BackendUnavailableError(UserInputError):
    """The openvino backend cannot run this network or setting; the message says why and what to set instead.

    ``inference_backend: "auto"`` catches it and runs torch; ``"openvino"`` stops with it.
    """


@functools.cache
def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (a dependency of the bundle since 0.13.0)."""
    return importlib.util.find_spec("openvino") is not None


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS` that can run here.

    Raises:
        UserInputError: an unknown name, or ``"openvino"`` without the openvino package.
    """
    if backend not in BACKENDS:
        raise UserInputError(f"Unknown inference_backend {backend!r}; choose one of {list(BACKENDS)}.")
    if backend == "openvino" and not openvino_available():
        raise UserInputError(
            "inference_backend is 'openvino' but the openvino package is not installed: "
            "install the bundle again (pip install -e .), which brings it, or set inference_backend to 'auto' or "
            "'torch'."
        )
    return backend


def float_precision_name(precision: torch.dtype) -> str:
    """The name of the precision a network asked to run at ``precision`` computes in without a quantized model
    (converted by OpenVINO, or on torch): ``"bfloat16"``, ``"float32"``; int8's is float32."""
    return "float32" if precision == torch.int8 else str(precision).removeprefix("torch.")


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that runs on ``device``: ``"auto"`` is ``"openvino"`` on a CPU where it imports, else ``"torch"``.

    The rule rests on ``nerveseg bench`` on a 2-core AVX2 CPU, where OpenVINO float32 was the default network's
    fastest path (docs/README.md). Where OpenVINO cannot serve a network, ``"auto"`` runs torch.

    Raises:
        UserInputError: as :func:`check_backend`.
    """
    check_backend(backend)
    if backend != "auto":
        return backend
    return "openvino" if torch.device(device).type == "cpu" and openvino_available() else "torch"


def backend_forward(
    runtime: OpenVINONetwork, backend: str, device: torch.device | str, torch_forward: Callable[..., Any]
) -> Callable[..., Any]:
    """The function that runs ``runtime.network``'s forward passes on ``device`` for ``backend``.

    ``torch_forward`` where the backend resolves to torch; ``runtime`` for ``"openvino"``, which stops with its
    reason where it cannot serve the network; for ``"auto"``, ``runtime`` with ``torch_forward`` taking over, after
    one logged warning, where OpenVINO cannot serve it (class logits, a failed conversion, an unwritable cache) and
    without one for what is torch's alone (training mode, extra network arguments).

    Args:
        runtime: the network on OpenVINO.
        backend: one of :data:`BACKENDS`.
        device: where the inputs are.
        torch_forward: the torch path's call of the network.
    """
    if resolve_backend(backend, device) != "openvino":
        return torch_forward
    if backend == "openvino":
        return runtime
    network = runtime.network
    if not isinstance(network, nn.Module) or network.training or runtime.refused is not None:
        return torch_forward

    def forward(images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if runtime.refused is None and not args and not kwargs:
            try:
                return runtime(images)
            except BackendUnavailableError as error:
                logger.warning(f"inference_backend 'auto' runs torch for {type(network).__name__}: {error}")
        return torch_forward(images, *args, **kwargs)

    return forward


def check_cache(checkpoint: str | os.PathLike | None, cache_dir: str | os.PathLike | None) -> str | os.PathLike | None:
    """``cache_dir`` if the OpenVINO cache can be keyed: a cache needs the checkpoint the network was loaded from.

    Raises:
        ValueError: ``cache_dir`` without ``checkpoint``.
    """
    if cache_dir is not None and checkpoint is None:
        raise ValueError(
            f"cache_dir {cache_dir} needs the checkpoint the network was loaded from: an entry is valid for one "
            "checkpoint's weights. Pass checkpoint, or cache_dir=None to convert in memory."
        )
    return cache_dir


class OpenVINONetwork:
    """A torch network's forward pass on the OpenVINO runtime (CPU): called like the network, float32 logits back.

    ``[B, C, H, W]`` images run through a model converted from ``network`` by ``openvino.convert_model`` at the
    first call for each ``(C, H, W)``, compiled once per batch size (static shapes) for the CPU with
    ``torch.get_num_threads()`` threads and ``precision`` as the inference precision hint. A MetaTensor comes
    back with the images' metadata, on the images' device. The network is read at that first call, never changed:
    weights loaded into it later are not seen, as with MONAI's ``trt_compile``; wrap it again after loading others.

    With ``checkpoint`` and ``cache_dir`` the converted model is kept in ``cache_dir`` (:mod:`~.openvino_cache`)
    and read from there by the next process while ``checkpoint`` is unchanged; ``network`` must hold that
    checkpoint's weights. Without them it is converted in memory, once per wrapper.

    A network in training mode, one whose output is not a single tensor, and one that attaches class logits
    (``meta["class_logits"]``: MUNet, the presence-gated model; the converted graph would drop them) raise
    :class:`BackendUnavailableError`: run those with the torch backend. What cannot change while the wrapper lives
    (class logits, a failed conversion, an unwritable cache, a precision the CPU lacks) is kept in :attr:`refused`,
    and the precision the model last compiled runs at in :attr:`runs_at` (``"int8"``, ``"float32"``, ...; ``None``
    before the first call).
    Conversion checks the model against the network on the first image and logs the largest logit difference (also
    in ``conversion.json``).

    Args:
        network: the torch module, in eval mode, weights loaded.
        precision: ``torch.float32``, or ``torch.bfloat16`` / ``torch.float16`` where the CPU computes them natively;
            ``torch.int8`` runs the int8 model accepted for ``checkpoint`` in ``cache_dir``, float32 where there is
            none (with a warning giving the reason).
        checkpoint: the file the network's weights were loaded from; with ``cache_dir``, the cache's key.
        cache_dir: the folder of converted models; ``None`` converts in memory.

    Raises:
        ValueError: ``cache_dir`` without ``checkpoint``: the cache could not tell whose weights an entry holds.
    """

    def __init__(
        self,
        network: nn.Module,
        precision: torch.dtype = torch.float32,
        checkpoint: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        check_cache(checkpoint, cache_dir)
        self.network = network
        self.precision = precision
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.refused: str | None = None
        self.runs_at: str | None = None
        self._models: dict[tuple[tuple[int, ...], str, int], CompiledModel] = {}
        self._lock = threading.Lock()

    def __call__(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``[B, out_C, H, W]`` float32 logits of ``[B, C, H, W]`` ``images``.

        Raises:
            BackendUnavailableError: the network or setting cannot run on OpenVINO; the message says what to set.
        """
        if args or kwargs:
            raise BackendUnavailableError(
                f"The openvino backend passes only the images to the network, but the inferer also gave "
                f"{len(args)} arguments and keywords {sorted(kwargs)}: set inference_backend to 'torch'."
            )
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}.")
        plain = (images.as_tensor() if isinstance(images, MetaTensor) else images).detach()
        return self._compiled_model(plain)(images)

    def _compiled_model(self, images: torch.Tensor) -> CompiledModel:
        network = self.network
        if not isinstance(network, nn.Module):
            raise BackendUnavailableError(
                f"The openvino backend converts torch modules, not {type(network).__name__}: "
                "set inference_backend to 'torch'."
            )
        if network.training:
            raise BackendUnavailableError(
                f"{type(network).__name__} is in training mode; the openvino backend is for evaluation and inference: "
                "put the network in eval mode, or set inference_backend to 'torch'."
            )
        if self.refused is not None:
            raise BackendUnavailableError(self.refused)
        if self.precision not in PRECISION_HINTS or not openvino_supports(self.precision):
            self._refuse(
                f"OpenVINO does not compute {str(self.precision).removeprefix('torch.')} natively on this CPU: set "
                "inference_precision to 'auto' or 'float32' (or inference_backend to 'torch')."
            )
        key = (tuple(images.shape[1:]), PRECISION_HINTS[self.precision][0], torch.get_num_threads())
        with self._lock:
            if key not in self._models:
                self._models[key] = self._compile(images, key[0])
            return self._models[key]

    def converted_model(self, images: torch.Tensor) -> Any:
        """The ``openvino.Model`` this wrapper runs for ``images``' ``(C, H, W)``, converted or read where needed:
        what :mod:`~.quantization` calibrates."""
        return self._compiled_model(images).model

    def _refuse(self, reason: str, cause: BaseException | None = None) -> NoReturn:
        self.refused = reason
        raise BackendUnavailableError(reason) from cause

    def _compile(self, images: torch.Tensor, shape: tuple[int, ...]) -> CompiledModel:
        """The model for input ``shape``, read from the cache or converted (and then cached), compiled."""
        config = compile_config(self.precision)
        entry = record = None
        if self.cache_dir is not None and self.checkpoint is not None:
            name = type(self.network).__name__
            entry = openvino_cache.entry_path(self.cache_dir, self.checkpoint, name, shape)
            record = openvino_cache.checkpoint_record(self.checkpoint)
            if self.precision == torch.int8:
                quantized, reason = openvino_cache.read_quantized(entry, record, core())
                if quantized is not None:
                    self.runs_at = "int8"
                    return CompiledModel(quantized, config)
                logger.warning(f"inference_precision 'int8': {reason} OpenVINO float32 is used.")
            model = openvino_cache.read_entry(entry, record, core())
            if model is not None:
                self.runs_at = float_precision_name(self.precision)
                return CompiledModel(model, config)
            try:
                openvino_cache.check_writable(entry.parent)
            except OSError as error:
                self._refuse(
                    f"Cannot write the OpenVINO cache {entry.parent} ({error.strerror or error}): make it writable, "
                    "set inference_cache_dir to a writable folder (None converts in memory, once per run), or set "
                    "inference_backend to 'torch'.",
                    error,
                )
        elif self.precision == torch.int8:
            logger.warning(
                "inference_precision 'int8' runs the quantized model kept beside the checkpoint (nerveseg quantize), "
                "but no checkpoint and inference_cache_dir were given. OpenVINO float32 is used."
            )
        model, reference, info = self._convert(images[:1])
        compiled = CompiledModel(model, config)
        converted = torch.from_numpy(compiled.infer(images.float().cpu().numpy())[:1])
        info["max_abs_diff"] = (converted - reference.cpu().float()).abs().max().item()
        info["checked_with_precision"] = config["INFERENCE_PRECISION_HINT"]
        size, cached = "x".join(map(str, shape)), f"; cached in {entry}" if entry else ""
        logger.info(
            f"OpenVINO: converted {info['network']} at {size} in {info['convert_s']:.1f} s, largest logit difference "
            f"from torch {info['max_abs_diff']:.1e} ({info['checked_with_precision']}){cached}"
        )
        if entry is not None and record is not None:
            openvino_cache.save_entry(model, entry, {**info, **record})
        self.runs_at = float_precision_name(self.precision)
        return compiled

    def _convert(self, example: torch.Tensor) -> tuple[Any, torch.Tensor, dict[str, Any]]:
        """The converted model (dynamic batch), the network's own logits of ``example`` and what to record."""
        import openvino

        network, name = self.network, type(self.network).__name__
        parameter = next(network.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        example = example.float().cpu()
        with torch.no_grad():
            reference = network(MetaTensor(example.to(device)))
        if not isinstance(reference, torch.Tensor):
            self._refuse(
                f"{name} returns {type(reference).__name__}, not one tensor of logits: "
                "set inference_backend to 'torch' for it."
            )
        if class_logits_of(reference) is not None:
            self._refuse(
                f"{name} attaches class logits (meta['class_logits']) that the converted model would drop: "
                "set inference_backend to 'torch' for it."
            )
        module = network if device.type == "cpu" else copy.deepcopy(network).cpu()
        start = time.perf_counter()
        try:
            # the filters are the process's: set them under the telemetry switch, one conversion at a time
            with _no_telemetry(), warnings.catch_warnings():  # about how OpenVINO traces, nothing a user can change
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", r"`torch\.jit\.trace")  # torch deprecates it (2.13 and 2.14 alike)
                shape = openvino.PartialShape([-1, *example.shape[1:]])
                model = openvino.convert_model(module, example_input=example, input=[shape])
        except Exception as error:  # the PyTorch frontend raises many kinds for what it cannot convert
            message = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self._refuse(f"OpenVINO cannot convert {name} ({message}): set inference_backend to 'torch' for it.", error)
        info = {
            "network": f"{type(network).__module__}.{type(network).__qualname__}",
            "input_shape": [-1, *example.shape[1:]],
            "torch": torch.__version__,
            "convert_s": time.perf_counter() - start,
        }
        return model, reference.as_tensor() if isinstance(reference, MetaTensor) else reference, info


@contextmanager
def _no_telemetry() -> Iterator[None]:
    """Keep OpenVINO's converter from sending usage telemetry, which it does unless the user opted out or it runs
    in CI (its consent check reads ``CI=true``): a bundle that serves medical images must not reach the network.
    ``CI`` is restored on exit; one conversion at a time runs under the switch, so none sees it restored early."""
    with _TELEMETRY_SWITCH:
        previous = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            yield
        finally:
            if previous is None:
                del os.environ["CI"]
            else:
                os.environ["CI"] = previous
