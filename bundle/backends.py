"""Inference backends: what runs the network's forward passes in evaluation and inference, PyTorch or OpenVINO.

:func:`resolve_backend` turns the configs' ``inference_backend`` into the backend that runs on a device;
:class:`OpenVINONetwork` stands in for a torch network with the OpenVINO runtime (called like the network, it
returns the same float32 logits). :class:`~nerveseg.bundle.accelerated.AcceleratedInferer` chooses between them, so
every inferer it wraps (single view, flip TTA, ASME) runs on either.

The OpenVINO model is converted from the network at its first call, once per weights and input size, and cached
on disk as ``{cache_dir}/{Network}-{C}x{H}x{W}-{key}/`` (``model.xml``, ``model.bin``, ``conversion.json``). The key
hashes the network's class, structure and state dict, the input size and the OpenVINO version, so a retrained
checkpoint gets a new entry; the folder keeps the :data:`CACHE_ENTRIES` most recently used and can be deleted at
any time. Compiled models stay in memory for the process, so a MONAI Label server compiles once per checkpoint,
not once per request.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from monai.data import MetaTensor
from torch import nn

from nerveseg.utils.class_logits import class_logits_of
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path

__all__ = [
    "BACKENDS",
    "CACHE_ENTRIES",
    "BackendUnavailableError",
    "OpenVINONetwork",
    "backend_forward",
    "cache_dir_beside",
    "check_backend",
    "openvino_available",
    "openvino_supports",
    "resolve_backend",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
"""The values of ``inference_backend``."""

CACHE_ENTRIES = 4
"""How many converted models a cache folder keeps, the most recently used; older entries are removed."""

_HINTS = {torch.float32: ("f32", "FP32"), torch.bfloat16: ("bf16", "BF16"), torch.float16: ("f16", "FP16")}
_COMPILED_IN_MEMORY = 4
_in_memory: OrderedDict[tuple[str, str, int], Any] = OrderedDict()
_digests: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_refused: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
_lock = threading.RLock()


class BackendUnavailableError(UserInputError):
    """The openvino backend cannot run this network or setting; the message says why and what to set instead.

    ``inference_backend: "auto"`` catches it and runs torch; ``"openvino"`` stops with it.
    """


@functools.cache
def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (it comes with the ``openvino`` and ``benchmark`` extras)."""
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
            "pip install -e '.[openvino]' (or set inference_backend to 'auto' or 'torch')."
        )
    return backend


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


def openvino_supports(precision: torch.dtype) -> bool:
    """Whether OpenVINO computes ``precision`` natively on this CPU (float32 always, bfloat16 with AVX512-BF16/AMX)."""
    if precision == torch.float32:
        return True
    return precision in _HINTS and _HINTS[precision][1] in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def backend_forward(
    network: Callable[..., Any],
    backend: str,
    device: torch.device | str,
    torch_forward: Callable[..., Any],
    precision: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
) -> Callable[..., Any]:
    """The function that runs ``network``'s forward passes on ``device`` for ``backend``.

    ``torch_forward`` where the backend resolves to torch; an :class:`OpenVINONetwork` for ``"openvino"``, which
    stops with its reason where it cannot serve the network; for ``"auto"``, OpenVINO with ``torch_forward`` taking
    over, after a logged warning, where OpenVINO cannot serve it (class logits, training mode, a failed conversion,
    an unwritable ``cache_dir``, extra network arguments).

    Args:
        network: the model.
        backend: one of :data:`BACKENDS`.
        device: where the inputs are.
        torch_forward: the torch path's call of ``network``.
        precision: OpenVINO's inference precision.
        cache_dir: OpenVINO's cache folder, ``None`` for none.
    """
    if resolve_backend(backend, device) != "openvino":
        return torch_forward
    runtime: OpenVINONetwork | None = OpenVINONetwork(network, precision, cache_dir)
    if backend == "openvino":
        return runtime
    if not isinstance(network, nn.Module) or network.training or network in _refused:
        return torch_forward

    def forward(images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        nonlocal runtime
        if runtime is not None and not args and not kwargs:
            try:
                return runtime(images)
            except BackendUnavailableError as error:
                logger.warning(f"inference_backend 'auto' runs torch for {type(network).__name__}: {error}")
                runtime = None
        return torch_forward(images, *args, **kwargs)

    return forward


def cache_dir_beside(checkpoint: str | os.PathLike, name: str = "openvino") -> str:
    """The folder ``name`` beside ``checkpoint``: where the configs cache the models converted from it."""
    return str(Path(checkpoint).parent / name)


@functools.cache
def _core() -> Any:
    import openvino

    return openvino.Core()


class OpenVINONetwork:
    """A torch network's forward pass on the OpenVINO runtime (CPU): called like the network, float32 logits back.

    ``[B, C, H, W]`` images run through a model converted from ``network`` by ``openvino.convert_model`` at the
    first call for each ``(C, H, W)`` (any batch size), compiled for the CPU with ``torch.get_num_threads()``
    threads and ``precision`` as the inference precision hint. A MetaTensor comes back with the images' metadata,
    on the images' device. The network is read, never changed; if its weights change (a checkpoint loaded into
    it), the next call converts again.

    A network in training mode, one whose output is not a single tensor, and one that attaches class logits
    (``meta["class_logits"]``: MUNet, the presence-gated model; the converted graph would drop them) raise
    :class:`BackendUnavailableError`: run those with the torch backend. Conversion checks the model against the
    network on the first image and logs the largest logit difference (also in ``conversion.json``).

    Args:
        network: the torch module, in eval mode, weights loaded.
        precision: ``torch.float32``, or ``torch.bfloat16`` / ``torch.float16`` where the CPU computes them natively.
        cache_dir: the folder of converted models (module docstring); ``None`` converts in memory, once per process.
    """

    def __init__(
        self, network: nn.Module, precision: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
    ) -> None:
        self.network = network
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

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
        compiled = self._compiled_model(plain)
        array = compiled.create_infer_request().infer({0: plain.to("cpu", torch.float32).contiguous().numpy()})[0]
        logits = torch.from_numpy(array).to(images.device)
        return MetaTensor(logits).copy_meta_from(images) if isinstance(images, MetaTensor) else logits

    def _compiled_model(self, images: torch.Tensor) -> Any:
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
        if network in _refused:
            raise BackendUnavailableError(_refused[network])
        if self.precision not in _HINTS or not openvino_supports(self.precision):
            raise BackendUnavailableError(
                f"OpenVINO does not compute {str(self.precision).removeprefix('torch.')} natively on this CPU: set "
                "inference_precision to 'auto' or 'float32' (or inference_backend to 'torch')."
            )
        hint, threads = _HINTS[self.precision][0], torch.get_num_threads()
        with _lock:
            key = (_entry_name(network, tuple(images.shape[1:])), hint, threads)
            if key not in _in_memory:
                _in_memory[key] = self._compile(images, key[0], hint, threads)
                while len(_in_memory) > _COMPILED_IN_MEMORY:
                    _in_memory.popitem(last=False)
            _in_memory.move_to_end(key)
            return _in_memory[key]

    def _compile(self, images: torch.Tensor, name: str, hint: str, threads: int) -> Any:
        """The compiled model of entry ``name``: read from the cache, or converted (and then cached)."""
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        entry = self.cache_dir / name if self.cache_dir is not None else None
        if entry is not None and (entry / "model.xml").is_file() and (entry / "model.bin").is_file():
            try:
                model = _core().read_model(entry / "model.xml")
            except RuntimeError as error:
                logger.warning(f"Converting again: cannot read the cached OpenVINO model {entry}: {error}")
                shutil.rmtree(entry, ignore_errors=True)
            else:
                _touch(entry)
                return _core().compile_model(model, "CPU", config)
        if entry is not None:
            _check_writable(entry.parent)
        model, reference, info = self._convert(images[:1])
        compiled = _core().compile_model(model, "CPU", config)
        converted = torch.from_numpy(compiled.create_infer_request().infer({0: images[:1].float().cpu().numpy()})[0])
        info["max_abs_diff"] = (converted - reference.cpu().float()).abs().max().item()
        info["checked_with_precision"] = hint
        size, cached = "x".join(map(str, info["input_shape"][1:])), f"; cached in {entry}" if entry else ""
        logger.info(
            f"OpenVINO: converted {info['network']} at {size} in {info['convert_s']:.1f} s, largest logit difference "
            f"from torch {info['max_abs_diff']:.1e} ({hint}){cached}"
        )
        if entry is not None:
            _save(model, entry, info)
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
        reason = None
        if not isinstance(reference, torch.Tensor):
            reason = f"{name} returns {type(reference).__name__}, not one tensor of logits"
        elif class_logits_of(reference) is not None:
            reason = f"{name} attaches class logits (meta['class_logits']) that the converted model would drop"
        if reason is not None:
            _refused[network] = f"{reason}: set inference_backend to 'torch' for it."
            raise BackendUnavailableError(_refused[network])
        module = network if device.type == "cpu" else copy.deepcopy(network).cpu()
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                shape = openvino.PartialShape([-1, *example.shape[1:]])
                with _no_telemetry():
                    model = openvino.convert_model(module, example_input=example, input=[shape])
        except Exception as error:  # the PyTorch frontend raises many kinds for what it cannot convert
            message = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _refused[network] = f"OpenVINO cannot convert {name} ({message}): set inference_backend to 'torch' for it."
            raise BackendUnavailableError(_refused[network]) from error
        info = {
            "network": f"{type(network).__module__}.{type(network).__qualname__}",
            "input_shape": [-1, *example.shape[1:]],
            "openvino": openvino.__version__,
            "torch": torch.__version__,
            "convert_s": time.perf_counter() - start,
        }
        return model, reference.as_tensor() if isinstance(reference, MetaTensor) else reference, info


def _no_telemetry() -> Any:
    """Keep OpenVINO's converter from sending usage telemetry, which it does unless the user opted out or it runs
    in CI (its consent check reads ``CI=true``): a bundle that serves medical images must not reach the network.
    Conversions run under ``_lock``, so no other thread sees the changed environment."""
    return mock.patch.dict(os.environ, {"CI": "true"})


def _entry_name(network: nn.Module, shape: tuple[int, ...]) -> str:
    import openvino

    key = hashlib.sha256(f"{_state_digest(network)} {shape} {openvino.__version__}".encode()).hexdigest()
    return f"{type(network).__name__}-{'x'.join(map(str, shape))}-{key[:16]}"


def _state_digest(network: nn.Module) -> str:
    """sha256 of the network's class, structure (its repr less batch-norm momentum, a training setting that the
    evaluate and inference configs set differently) and state dict; hashed again only when a tensor changed."""
    state = network.state_dict(keep_vars=True)
    fingerprint = tuple((id(t), t.data_ptr(), -1 if t.is_inference() else t._version) for t in state.values())
    known = _digests.get(network)
    if known is not None and known[0] == fingerprint:
        return known[1]
    structure = re.sub(r", momentum=[^,)]*", "", repr(network))
    digest = hashlib.sha256(f"{type(network).__module__}.{type(network).__qualname__}\n{structure}\n".encode())
    for key, tensor in state.items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    _digests[network] = (fingerprint, digest.hexdigest())
    return _digests[network][1]


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise BackendUnavailableError(
            f"Cannot write the OpenVINO cache {folder} ({error.strerror or error}): make it writable, set "
            "inference_cache_dir to a writable folder (None converts in memory, once per run), or set "
            "inference_backend to 'torch'."
        ) from error


def _save(model: Any, entry: Path, info: dict[str, Any]) -> None:
    """Write ``entry`` through a temporary folder beside it, keeping another process's complete entry.

    A write that fails once the folder was found writable (a full disk) only costs the cache: it is logged.
    """
    import openvino

    try:
        with atomic_path(entry, replace=False) as partial:
            partial.mkdir()
            openvino.save_model(model, partial / "model.xml", compress_to_fp16=False)
            (partial / "conversion.json").write_text(json.dumps(info, indent=4) + "\n")
    except FileExistsError:
        return
    except OSError as error:
        logger.warning(f"OpenVINO: could not cache the converted model in {entry} ({error}); it is used from memory")
        return
    _prune(entry.parent, CACHE_ENTRIES)


def _prune(folder: Path, keep: int) -> None:
    entries = [p for p in folder.iterdir() if p.is_dir() and (p / "conversion.json").is_file()]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _touch(entry: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache is used as it is
        os.utime(entry)
