"""Challenge submission files from predicted masks, and a reader for the masks the bundle's inference writes.

- :func:`write_nerve_submission`: Kaggle ultrasound nerve segmentation, header ``img,pixels``, one row per test
  image, numeric ids sorted numerically, nerve-style RLE (column-major, 1-based runs, ``""`` for an empty mask).
- :func:`write_siim_submission`: SIIM-ACR pneumothorax, header ``ImageId,EncodedPixels``, one row per image in the
  given order, siim-style RLE (``-1`` for an empty mask).

Every mask is checked (shape, binary values, unique ids) before anything is written, and the file is written
to a temporary name in the same folder and then renamed, so a failure leaves any previous file as it was.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nerveseg.bundle.data import rle
from nerveseg.utils.files import atomic_path

__all__ = ["read_masks_folder", "read_nerve_submission", "write_nerve_submission", "write_siim_submission"]

NERVE_SHAPE = (420, 580)
SIIM_SHAPE = (1024, 1024)
_FILE_SUFFIX = re.compile(r"(_mask)?(\.tiff?|\.png|\.dcm)$", re.IGNORECASE)

MaskId = str | int
Masks = Iterable[tuple[MaskId, np.ndarray]] | Mapping[MaskId, np.ndarray]


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    integers = all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape)
    if len(shape) != 2 or not integers or min(shape) < 1:
        raise ValueError(f"shape must be two positive integers (H, W), got {shape!r}.")
    return int(shape[0]), int(shape[1])


def _nerve_id(key: MaskId) -> int:
    """``12``, ``"12"``, ``"12.tif"`` and ``"12_mask.tif"`` are all image 12; test ids start at 1."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        number = int(key)
    elif isinstance(key, str) and _FILE_SUFFIX.sub("", key.strip()).isdigit():
        number = int(_FILE_SUFFIX.sub("", key.strip()))
    else:
        raise ValueError(
            f"image {key!r}: the nerve challenge's test ids are numbers (test/12.tif is image 12); "
            "pass ints or int-like strings such as '12' or '12_mask.tif'."
        )
    if number < 1:
        raise ValueError(f"image {key!r}: test ids start at 1 (test/1.tif); an enumerate() from 0 is off by one.")
    return number


def _siim_id(key: MaskId) -> str:
    """An ``ImageId`` (the DICOM SOP instance UID), with a trailing ``_mask`` and image extension dropped."""
    text = _FILE_SUFFIX.sub("", str(key).strip()) if isinstance(key, (str, int)) and not isinstance(key, bool) else ""
    if not text:
        raise ValueError(f"image {key!r}: an ImageId must be a non-empty string (the DICOM file's UID).")
    return text


def _binary(key: object, mask: np.ndarray, shape: tuple[int, int], challenge: str) -> np.ndarray:
    """``mask`` as a 2D array after checking its shape and values; a leading channel of 1 is squeezed."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != shape:
        got = "x".join(map(str, mask.shape)) or "a scalar"
        raise ValueError(
            f"image {key}: mask is {got}, the {challenge} challenge needs {shape[0]}x{shape[1]} "
            "(invert the resize before writing; [1, H, W] and [H, W] masks are accepted)."
        )
    if mask.dtype != bool:
        values = np.unique(mask[mask != 0])
        if values.size > 1 or (values.size == 1 and values[0] not in (1, 255)):
            shown = ", ".join(f"{v:g}" for v in values[:5].tolist()) + (", ..." if values.size > 5 else "")
            raise ValueError(
                f"image {key}: mask has nonzero values {shown}; a mask must be bool, 0/1 or 0/255 "
                "(threshold the probabilities first, e.g. with AsDiscreted)."
            )
    return mask


def _encode_all(
    masks: Masks, shape: Sequence[int], style: str, challenge: str, to_id: Callable[[MaskId], MaskId]
) -> list[tuple[MaskId, str]]:
    """``[(id, rle)]`` in input order, after checking every mask and id; nothing is written here."""
    shape = _check_shape(shape)
    items = list(masks.items() if isinstance(masks, Mapping) else masks)
    if not items:
        raise ValueError(f"no masks to write; the {challenge} submission needs one mask per test image.")
    rows: list[tuple[MaskId, str]] = []
    seen: dict[MaskId, MaskId] = {}
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValueError(f"masks must be (id, mask) pairs or a mapping {{id: mask}}, got an item {item!r:.80}.")
        key, mask = item
        image_id = to_id(key)
        if image_id in seen:
            raise ValueError(
                f"image {image_id}: given twice (as {seen[image_id]!r} and {key!r}); keep one mask per image."
            )
        seen[image_id] = key
        rows.append((image_id, rle.encode(_binary(image_id, mask, shape, challenge), style)))
    return rows


def _write_atomically(path: str | os.PathLike, header: tuple[str, str], rows: list[tuple[MaskId, str]]) -> Path:
    """Write a CSV to a temporary file beside ``path``, then rename it; on failure remove the temporary file."""
    with atomic_path(path) as partial, open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def write_nerve_submission(
    masks: Masks, path: str | os.PathLike, shape: Sequence[int] = NERVE_SHAPE, num_images: int | None = None
) -> Path:
    """Write the ultrasound nerve challenge's submission CSV.

    Args:
        masks: ``(id, mask)`` pairs or a mapping ``{id: mask}``. An id is the test image's number: ``12``,
            ``"12"``, ``"12.tif"`` or ``"12_mask.tif"``; ids start at 1. A mask is ``(H, W)`` or ``(1, H, W)``,
            bool, 0/1 or 0/255 (as :func:`read_masks_folder` returns them), at the original image size.
        path: the CSV file to write (its folder is created if needed).
        shape: ``(H, W)`` every mask must have; the challenge's images are 420x580.
        num_images: if given, the ids must be exactly ``1..num_images`` (5508 for the challenge's test set).

    Returns:
        ``path``. Rows are ``img,pixels`` sorted numerically by id, pixels in nerve-style RLE
        (:func:`nerveseg.bundle.data.rle.encode`), an empty string for an empty mask.

    Raises:
        ValueError: before anything is written, for no masks, a non-numeric or duplicate id, a mask of another
            shape or with values other than 0/1 or 0/255, or ids other than ``1..num_images``.
    """
    rows = sorted(_encode_all(masks, shape, "nerve", "nerve", _nerve_id), key=lambda row: row[0])
    if num_images is not None:
        ids = {row[0] for row in rows}
        missing = sorted(set(range(1, num_images + 1)) - ids)
        extra = sorted(ids - set(range(1, num_images + 1)))
        if missing or extra:
            raise ValueError(
                f"the submission needs images 1..{num_images}; missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
                f", unexpected {extra[:5]}{'...' if len(extra) > 5 else ''} (check for an off-by-one in the ids)."
            )
    return _write_atomically(path, ("img", "pixels"), rows)


def write_siim_submission(masks: Masks, path: str | os.PathLike, shape: Sequence[int] = SIIM_SHAPE) -> Path:
    """Write the SIIM-ACR pneumothorax challenge's submission CSV.

    Rows keep the order of ``masks`` (the challenge matches rows by ``ImageId``; keeping the order lets a caller
    follow the sample submission), one row per image holding the union of its regions.

    Args:
        masks: ``(ImageId, mask)`` pairs or a mapping ``{ImageId: mask}``; a trailing ``_mask`` and image extension
            (``.png``, ``.dcm``, ``.tif``) are dropped from an id. Masks as for :func:`write_nerve_submission`.
        path: the CSV file to write (its folder is created if needed).
        shape: ``(H, W)`` every mask must have; the challenge's images are 1024x1024.

    Returns:
        ``path``. Rows are ``ImageId,EncodedPixels`` in siim-style RLE, ``-1`` for an empty mask.

    Raises:
        ValueError: before anything is written, for no masks, an empty or duplicate id, or a mask of another
            shape or with values other than 0/1 or 0/255.
    """
    rows = _encode_all(masks, shape, "siim", "pneumothorax", _siim_id)
    return _write_atomically(path, ("ImageId", "EncodedPixels"), rows)


def read_nerve_submission(path: str | os.PathLike, shape: Sequence[int] = NERVE_SHAPE) -> dict[int, np.ndarray]:
    """Read a nerve submission CSV (``img,pixels``) back into ``{id: uint8 0/1 mask of shape (H, W)}``.

    :func:`nerveseg.bundle.data.rle.read_nerve_csv` reads the training file, whose rows also carry a ``subject``.
    """
    shape = _check_shape(shape)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file.")
    masks: dict[int, np.ndarray] = {}
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = [field.strip() for field in next(reader, [])]
        if header != ["img", "pixels"]:
            raise ValueError(f"{path} row 1: header {header}, expected ['img', 'pixels'].")
        for row_number, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise ValueError(f"{path} row {row_number}: {len(row)} fields, expected 2 (img, pixels).")
            key = _nerve_id(row[0])
            if key in masks:
                raise ValueError(f"{path} row {row_number}: image {key} appears twice.")
            masks[key] = rle.decode(row[1], shape, "nerve", name=f"{path} row {row_number} (image {key})")
    return masks


def _sort_key(image_id: str) -> tuple[int, int, str]:
    return (0, int(image_id), "") if image_id.isdigit() else (1, 0, image_id)


def read_masks_folder(
    folder: str | os.PathLike, suffix: str = "_mask", extensions: Sequence[str] = (".tif", ".png")
) -> dict[str, np.ndarray]:
    """Read the masks that the bundle's inference writes (``{id}_mask.tif``, 8-bit 0/255) into ``{id: mask}``.

    Only files named ``{id}{suffix}{extension}`` directly in ``folder`` are read (the extension in any case);
    hidden files such as the writer's partial files are skipped.

    Args:
        folder: the inference output folder.
        suffix: what follows the id in a file name.
        extensions: the image extensions to read.

    Returns:
        ``{id: (H, W) array as stored}`` (uint8 0/255 for the bundle's masks), numeric ids in numeric order first.

    Raises:
        ValueError: for a missing folder, a folder without matching files, two files for one id, or a file that is
            unreadable or not single-channel (the file is named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder; run inference first or pass the folder it wrote to.")
    endings = tuple(f"{suffix}{ext}".lower() for ext in extensions)
    files: dict[str, Path] = {}
    for file in folder.iterdir():
        name = file.name
        ending = next((e for e in endings if name.lower().endswith(e)), None)
        if ending is None or name.startswith(".") or not file.is_file() or len(name) == len(ending):
            continue
        image_id = name[: -len(ending)]
        if image_id in files:
            raise ValueError(f"{folder}: image {image_id} has two masks, {files[image_id].name} and {name}; keep one.")
        files[image_id] = file
    if not files:
        patterns = " or ".join(f"*{suffix}{ext}" for ext in extensions)
        raise ValueError(f"{folder}: no {patterns} files; run inference first or check suffix and extensions.")
    masks: dict[str, np.ndarray] = {}
    for image_id in sorted(files, key=_sort_key):
        try:
            with Image.open(files[image_id]) as image:
                if len(image.getbands()) != 1:
                    raise ValueError(f"{files[image_id]}: mode {image.mode}, expected a single-channel mask.")
                masks[image_id] = np.asarray(image).copy()
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"{files[image_id]}: not a readable image ({error}).") from error
    return masks
