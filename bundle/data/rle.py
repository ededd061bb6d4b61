"""Run-length codecs for the two challenge dialects, and readers for their mask CSV files.

Both dialects number the pixels of an ``(H, W)`` mask column-major (top to bottom, then left to right, i.e.
Fortran order) and write ``start length`` pairs separated by spaces; they differ in everything else:

- ``"nerve"`` (Kaggle ultrasound nerve segmentation, ``train_masks.csv``): starts are 1-based and absolute;
  an empty mask is the empty string ``""``.
- ``"siim"`` (SIIM-ACR pneumothorax, ``train-rle.csv``): the first start is 0-based and absolute, every later
  start is the gap (in pixels) since the previous run ended; an empty mask is ``"-1"``.

Runs at 0-based pixels 5-6 and 10-12 are ``"6 2 11 3"`` in nerve style and ``"5 2 3 3"`` in siim style.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from nerveseg.bundle.data.io import DatasetError

STYLES = ("nerve", "siim")
_INTEGER = re.compile(r"-?[0-9]+")


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"Unknown RLE style {style!r}; use one of {STYLES}.")


def encode(mask: np.ndarray, style: str) -> str:
    """Run-length encode a 2D mask.

    Args:
        mask: array of shape ``(H, W)``; nonzero pixels are foreground (bool, 0/1 and 0/255 all work).
        style: ``"nerve"`` or ``"siim"`` (see the module docstring); there is no default.

    Returns:
        The RLE string: ``""`` (nerve) or ``"-1"`` (siim) for an empty mask.
    """
    _check_style(style)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects a 2D (H, W) mask, got shape {mask.shape}; squeeze or index channels first.")
    flat = np.concatenate(([0], (mask != 0).ravel(order="F").astype(np.int8), [0]))
    edges = np.diff(flat)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # 0-based, end exclusive
    if starts.size == 0:
        return "" if style == "nerve" else "-1"
    if style == "nerve":
        firsts = starts + 1
    else:
        firsts = starts - np.concatenate(([0], ends[:-1]))
    return " ".join(map(str, np.column_stack((firsts, ends - starts)).ravel().tolist()))


def decode(text: str, shape: tuple[int, int], style: str, name: str | None = None) -> np.ndarray:
    """Decode an RLE string into a mask, checking it on the way.

    Args:
        text: the RLE string.
        shape: ``(H, W)`` of the image it belongs to.
        style: ``"nerve"`` or ``"siim"`` (see the module docstring); there is no default.
        name: where the string comes from (e.g. ``"train_masks.csv row 17 (1_5)"``), used in error messages.

    Returns:
        ``uint8`` array of shape ``(H, W)`` with values 0 and 1.

    Raises:
        ValueError: a malformed string (odd token count, non-integer or negative token, zero length, a run outside
            the image, overlapping or unsorted runs, or the other style's empty mask), naming ``name`` and the run.
    """
    _check_style(style)
    if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in shape):
        raise ValueError(f"shape must be two positive integers (H, W), got {shape!r}.")
    where = name or "RLE string"
    num_pixels = int(shape[0]) * int(shape[1])
    text = text.strip()
    if style == "nerve" and text == "-1":
        raise DatasetError(f"{where}: '-1' is the siim-style empty mask; nerve style writes an empty mask as ''.")
    if style == "siim" and text == "":
        raise DatasetError(f"{where}: '' is the nerve-style empty mask; siim style writes an empty mask as '-1'.")
    flat = np.zeros(num_pixels + 1, dtype=np.int32)
    tokens = [] if text in ("", "-1") else text.split()
    if len(tokens) % 2:
        raise DatasetError(f"{where}: {len(tokens)} tokens, expected an even number of 'start length' pairs.")
    for i, token in enumerate(tokens):
        if not _INTEGER.fullmatch(token):
            raise DatasetError(f"{where}: token {i + 1} ({token!r}) is not an integer.")
        if token.startswith("-"):
            raise DatasetError(f"{where}: token {i + 1} ({token}) is negative; starts and lengths are >= 0.")
        if int(token) > num_pixels:
            raise DatasetError(f"{where}: token {i + 1} ({token}) is larger than the image ({num_pixels} pixels).")
    values = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    firsts, lengths = values[:, 0], values[:, 1]
    label = "start" if style == "nerve" else "gap"

    def fail(k: int, problem: str) -> None:
        run = f"run {k + 1} ({label} {firsts[k]}, length {lengths[k]})"
        raise DatasetError(f"{where}: {run} {problem}.")

    for k in np.flatnonzero(lengths == 0)[:1]:
        fail(k, "has zero length")
    if style == "nerve":
        for k in np.flatnonzero(firsts < 1)[:1]:
            fail(k, "starts before the first pixel (nerve starts are 1-based)")
        starts = firsts - 1
    else:
        starts = np.cumsum(firsts) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ends = starts + lengths  # 0-based, exclusive
    for k in np.flatnonzero(ends > num_pixels)[:1]:
        fail(k, f"ends at 0-based pixel {ends[k] - 1}, past the image end ({num_pixels} pixels for shape {shape})")
    for k in np.flatnonzero(starts[1:] < ends[:-1])[:1] + 1:
        fail(k, f"starts before the previous run ends (0-based pixel {ends[k - 1] - 1}); runs must be sorted, disjoint")
    np.add.at(flat, starts, 1)
    np.add.at(flat, ends, -1)
    return (np.cumsum(flat[:-1]) > 0).astype(np.uint8).reshape(shape, order="F")


def _read_rows(path: str | os.PathLike, columns: tuple[str, ...]):
    """Yield ``(row_number, {column: value})`` for each data row of a CSV file; header names are stripped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [field.strip() for field in next(reader, [])]
        missing = [column for column in columns if column not in header]
        if missing:
            raise DatasetError(f"{path} row 1: header {header} lacks column(s) {missing}; expected {list(columns)}.")
        for row_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(f"{path} row {row_number}: {len(row)} fields, expected {len(header)} ({header}).")
            yield row_number, dict(zip(header, row, strict=True))


def read_runs(path: str | os.PathLike, style: str) -> dict[str, list[tuple[str, str]]]:
    """Run-length strings of a challenge CSV by image id, not yet decoded (the image size may not be known yet).

    ``style="nerve"`` reads ``train_masks.csv`` (header ``subject,img,pixels``, id ``{subject}_{img}``, one row
    per image); ``style="siim"`` reads ``train-rle.csv`` (header ``ImageId,EncodedPixels``, the stage-1 leading
    space accepted; several rows of one image are several regions).

    Returns:
        ``{id: [(where, text), ...]}`` in file order, ``where`` naming the file and row for error messages.
    """
    _check_style(style)
    columns = ("subject", "img", "pixels") if style == "nerve" else ("ImageId", "EncodedPixels")
    runs: dict[str, list[tuple[str, str]]] = {}
    first_row: dict[str, int] = {}
    for row_number, record in _read_rows(path, columns):
        if style == "nerve":
            key = f"{record['subject'].strip()}_{record['img'].strip()}"
            if key in runs:
                raise DatasetError(f"{path} row {row_number}: id {key} already appeared in row {first_row[key]}.")
        else:
            key = record["ImageId"].strip()
        first_row.setdefault(key, row_number)
        runs.setdefault(key, []).append((f"{path} row {row_number} ({key})", record[columns[-1]]))
    return runs


def decode_runs(runs: list[tuple[str, str]], shape: tuple[int, int], style: str) -> np.ndarray:
    """The union of the masks of one image's rows, as returned by :func:`read_runs`."""
    mask = np.zeros(shape, dtype=np.uint8)
    for where, text in runs:
        mask |= decode(text, shape, style, name=where)
    return mask


def read_nerve_csv(path: str | os.PathLike, shape: tuple[int, int] = (420, 580)) -> dict[str, np.ndarray]:
    """Read the nerve challenge's ``train_masks.csv`` (header ``subject,img,pixels``, nerve-style RLE).

    Args:
        path: the CSV file.
        shape: ``(H, W)`` of the images.

    Returns:
        ``{f"{subject}_{img}": uint8 mask of shape (H, W)}`` in file order.
    """
    return {key: decode_runs(runs, shape, "nerve") for key, runs in read_runs(path, "nerve").items()}


def read_siim_csv(path: str | os.PathLike, shape: tuple[int, int] = (1024, 1024)) -> dict[str, np.ndarray]:
    """Read the pneumothorax ``train-rle.csv`` (header ``ImageId,EncodedPixels``, siim-style RLE).

    Several rows for one ``ImageId`` are several regions; its mask is their union. ``"-1"`` is an empty mask.

    Args:
        path: the CSV file (the stage-1 header's leading space in ``" EncodedPixels"`` is accepted).
        shape: ``(H, W)`` of the images.

    Returns:
        ``{ImageId: uint8 mask of shape (H, W)}`` in order of first appearance.
    """
    return {key: decode_runs(runs, shape, "siim") for key, runs in read_runs(path, "siim").items()}
