"""The OpenVINO models converted from a checkpoint, kept beside it: one entry per checkpoint and input size.

An entry ``{cache_dir}/{checkpoint stem}-{Network}-{C}x{H}x{W}/`` holds ``model.xml``, ``model.bin`` and
``conversion.json``: the network, the checkpoint it was converted from (path, size, modification time), the
versions, the conversion time and the largest logit difference from torch found at conversion. As with MONAI's
``trt_compile``, whose plan file sits beside the checkpoint and is rebuilt when the checkpoint is newer, an entry is
used while its checkpoint is unchanged (same size and modification time) and the OpenVINO version is the same;
otherwise :mod:`~.backends` converts again and the entry is replaced. Entries are written under a temporary name and
renamed; the folder can be deleted at any time, and a read-only folder is used as it is.

Beside an entry, ``{entry}-int8/`` holds the int8 model that ``nerveseg quantize`` calibrated from it, with its
validation Dice against the float32 model's and whether it was accepted; a refused one keeps only the record and
its reason (:func:`read_quantized`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path

__all__ = [
    "cache_dir_beside",
    "check_writable",
    "checkpoint_record",
    "entry_path",
    "quantized_entry",
    "read_entry",
    "read_quantized",
    "save_entry",
]

logger = logging.getLogger(__name__)

_RECORD_KEYS = ("checkpoint_bytes", "checkpoint_mtime_ns", "openvino")


def cache_dir_beside(checkpoint: str | os.PathLike, name: str = "openvino") -> str:
    """The folder ``name`` beside ``checkpoint``: where the configs cache the models converted from it."""
    return str(Path(checkpoint).parent / name)


def entry_path(
    cache_dir: str | os.PathLike, checkpoint: str | os.PathLike, network: str, shape: tuple[int, ...]
) -> Path:
    """The entry of ``checkpoint``'s ``network`` (its class name) at input ``shape`` ``(C, H, W)`` in ``cache_dir``."""
    return Path(cache_dir) / f"{Path(checkpoint).stem}-{network}-{'x'.join(map(str, shape))}"


def checkpoint_record(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """What ties an entry to ``checkpoint``: its path, size and modification time, and the OpenVINO version.

    Raises:
        UserInputError: ``checkpoint`` is not a file.
    """
    import openvino

    path = Path(checkpoint)
    if not path.is_file():
        raise UserInputError(
            f"checkpoint {path} is not a file: the OpenVINO cache keeps models converted from a checkpoint; pass the "
            "checkpoint the network was loaded from (checkpoint_path), or set inference_cache_dir to None."
        )
    stat = path.stat()
    return {
        "checkpoint": str(path.resolve()),
        "checkpoint_bytes": stat.st_size,
        "checkpoint_mtime_ns": stat.st_mtime_ns,
        "openvino": openvino.__version__,
    }


def read_entry(entry: Path, record: dict[str, Any], core: Any) -> Any | None:
    """The model of ``entry``, read by the OpenVINO ``core``, if it was converted from the checkpoint of ``record``;
    ``None`` where there is no such entry. One that cannot be read is removed, so the next conversion replaces it.
    """
    try:
        stored = json.loads((entry / "conversion.json").read_text())
    except (OSError, ValueError):
        return None
    if any(stored.get(key) != record[key] for key in _RECORD_KEYS):
        logger.info(f"OpenVINO: converting again, {entry} was converted from another checkpoint or OpenVINO version")
        return None
    try:
        return core.read_model(entry / "model.xml")
    except RuntimeError as error:
        logger.warning(f"OpenVINO: converting again, cannot read the cached model {entry}: {error}")
        shutil.rmtree(entry, ignore_errors=True)
        return None


def quantized_entry(entry: Path) -> Path:
    """The folder of the int8 model quantized from the float32 ``entry``."""
    return entry.with_name(f"{entry.name}-int8")


def read_quantized(entry: Path, record: dict[str, Any], core: Any) -> tuple[Any | None, str]:
    """The accepted int8 model quantized from ``entry``'s checkpoint, or ``None`` and the one-line reason why not.

    A model is used only while its checkpoint and OpenVINO version are unchanged and its Dice check was passed.
    """
    quantized = quantized_entry(entry)
    try:
        stored = json.loads((quantized / "conversion.json").read_text())
    except (OSError, ValueError):
        return None, f"no int8 model in {quantized}; make one with `nerveseg quantize` on the validation split."
    if any(stored.get(key) != record[key] for key in _RECORD_KEYS):
        return None, (
            f"the int8 model in {quantized} was made from another checkpoint or OpenVINO version; run "
            "`nerveseg quantize` again."
        )
    if not stored.get("accepted"):
        return None, f"the int8 model of {record['checkpoint']} was refused: {stored.get('reason', 'no reason kept')}"
    try:
        return core.read_model(quantized / "model.xml"), ""
    except RuntimeError as error:
        return None, f"cannot read the int8 model {quantized} ({error}); run `nerveseg quantize` again."


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a temporary file in it; raises the ``OSError`` where that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=folder).close()


def save_entry(model: Any | None, entry: Path, info: dict[str, Any]) -> None:
    """Write ``entry`` through a temporary folder beside it, replacing an entry of an older checkpoint once complete;
    ``model`` ``None`` (a refused int8 model) keeps only ``conversion.json``.

    A write that fails once the folder was found writable (a full disk) only costs the cache: it is logged.
    """
    import openvino

    try:
        with atomic_path(entry) as partial:
            partial.mkdir()
            if model is not None:
                openvino.save_model(model, partial / "model.xml", compress_to_fp16=False)
            (partial / "conversion.json").write_text(json.dumps(info, indent=4) + "\n")
    except OSError as error:
        logger.warning(f"OpenVINO: could not cache the converted model in {entry} ({error}); it is used from memory")
