"""Dataset layouts users bring, each listed as samples that load one image and its mask on demand.

A reader only finds files and pairs them; loading (and every check of a file's content) happens in
``Sample.load``, so that ``nerveseg prepare`` can report or skip a bad file and keep going.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread

from nerveseg.bundle.data import rle
from nerveseg.bundle.data.datalist import find_mask, list_images, mask_files, natural_key, no_mask_error, subject_of
from nerveseg.bundle.data.io import (
    IMAGE_EXTENSIONS,
    DatasetError,
    check_mask_options,
    check_same_size,
    extension,
    file_stem,
    find_file,
    read_dicom,
    read_image,
    read_mask,
    to_uint8,
)

FORMATS = ("nerve", "pneumothorax", "folders")
_NERVE_MASKS_ELSEWHERE = (
    "if the masks are a run-length CSV, pass it (`--csv_file train_masks.csv`); if they are in another folder, "
    "pair the folders by name with `nerveseg prepare folders`."
)


@dataclass
class Sample:
    """One image of a dataset, with what is needed to load it and its mask.

    Attributes:
        id: unique name, used for the converted files (``images/{id}.png``).
        subject: the patient or sequence the image belongs to; splits never separate a subject.
        source: the file (and CSV row) to name in messages.
        load: returns ``(image uint8 [H, W], mask bool [H, W] or None, metadata)``; the mask is ``None`` for
            an unlabelled image (a challenge's test set).
    """

    id: str
    subject: str
    source: str
    load: Callable[[], tuple[np.ndarray, np.ndarray | None, dict]]


def read_nerve(
    src: str | os.PathLike, csv_file: str | os.PathLike | None = None, mask_threshold: float | None = None
) -> Iterator[Sample]:
    """The ultrasound nerve challenge: ``train/{subject}_{img}.tif`` with ``_mask.tif`` or ``train_masks.csv``.

    Masks come from the ``{stem}_mask.{ext}`` files (any of ``IMAGE_EXTENSIONS``, the image's own preferred, so
    an RGB ``1_1.jpg`` pairs with ``1_1_mask.tif``), or from the run-length CSV (``subject,img,pixels``) when
    ``csv_file`` is given or the first image has no mask file and ``src/train_masks.csv`` exists.
    ``test/{id}.tif`` images are listed unlabelled. ``mask_threshold``: pixels ``>=`` it are foreground (lossy
    JPEG masks); by default masks must be binary.
    """
    src = Path(src)
    layout = (
        f"`prepare nerve` reads the challenge layout, {src / 'train'}/{{subject}}_{{frame}}.tif with "
        "{subject}_{frame}_mask.tif (or train_masks.csv); for a folder of images beside a folder of masks use "
        "`nerveseg prepare folders`."
    )
    if not (src / "train").is_dir():
        raise DatasetError(f"{src / 'train'}: no such folder; {layout}")
    train = list_images(src / "train", IMAGE_EXTENSIONS)
    if not train:
        raise DatasetError(f"{src / 'train'}: no images found; {layout}")
    if csv_file is None and find_mask(train[0], IMAGE_EXTENSIONS) is None:
        csv_file = src / "train_masks.csv" if (src / "train_masks.csv").is_file() else None
    runs = rle.read_runs(csv_file, "nerve") if csv_file is not None else None

    found = None  # the folder's *_mask.* files, listed once for the messages about images without mask
    for path in train:
        sample_id = file_stem(path)
        if runs is not None:
            missing = DatasetError(f"{path}: image has no row in {csv_file}.")
            load = _loader(path, runs=runs[sample_id]) if sample_id in runs else _fail(missing)
        elif (mask_path := find_mask(path, IMAGE_EXTENSIONS)) is not None:
            load = _loader(path, mask_path=mask_path, mask_threshold=mask_threshold)
        else:
            found = mask_files(path.parent) if found is None else found
            load = _fail(no_mask_error(path, IMAGE_EXTENSIONS, found, _NERVE_MASKS_ELSEWHERE))
        yield Sample(sample_id, subject_of(path), str(path), load)
    if (src / "test").is_dir():
        for path in list_images(src / "test", IMAGE_EXTENSIONS):
            yield Sample(f"test_{file_stem(path)}", f"test_{file_stem(path)}", str(path), _loader(path))


def _fail(error: DatasetError) -> Callable[[], tuple[np.ndarray, np.ndarray | None, dict]]:
    """A loader that raises a problem found while listing, so that ``--skip-bad`` can skip the sample."""

    def load() -> tuple[np.ndarray, np.ndarray | None, dict]:
        raise error

    return load


def _loader(
    image_path: Path,
    mask_path: Path | None = None,
    runs: list[tuple[str, str]] | None = None,
    target_class: int | None = None,
    instances: bool = False,
    window: tuple[float, float] | None = None,
    clahe: bool = False,
    mask_threshold: float | None = None,
) -> Callable[[], tuple[np.ndarray, np.ndarray | None, dict]]:
    def load() -> tuple[np.ndarray, np.ndarray | None, dict]:
        image = to_uint8(read_image(image_path), window=window, clahe=clahe)
        if mask_path is not None:
            if not mask_path.exists():
                raise DatasetError(f"{image_path}: image has no mask (expected {mask_path}).")
            mask = read_mask(mask_path, target_class=target_class, instances=instances, threshold=mask_threshold)
            check_same_size(image, mask, image_path, mask_path)
            return image, mask, {}
        if runs is not None:
            return image, rle.decode_runs(runs, image.shape, "nerve").astype(bool), {}
        return image, None, {}

    return load


def _with_fov(load: Callable, image_path: Path, fov_dir: Path, fov_stem: str) -> Callable:
    def load_with_fov() -> tuple[np.ndarray, np.ndarray | None, dict]:
        image, mask, meta = load()
        fov_path = find_file(fov_dir, fov_stem)
        if fov_path is None:
            raise DatasetError(f"{fov_dir / fov_stem}.*: no such file (with one of the extensions {IMAGE_EXTENSIONS}).")
        fov = read_mask(fov_path)
        check_same_size(image, fov, image_path, fov_path)
        return image, mask, {**meta, "fov": fov}

    return load_with_fov


def read_pneumothorax(
    src: str | os.PathLike,
    csv_file: str | os.PathLike | None = None,
    window: tuple[float, float] | None = None,
    clahe: bool = False,
) -> Iterator[Sample]:
    """The SIIM-ACR pneumothorax layout: DICOM files (any depth below ``src``) and ``ImageId,EncodedPixels``.

    The image id is the DICOM file's stem (the SOP Instance UID in the challenge), the subject its PatientID.
    Several CSV rows of one image are several regions (their union is the mask); ``-1`` is an empty mask.
    Patient id, sex and age are kept in the datalist.

    Args:
        src: folder holding the ``.dcm`` files.
        csv_file: the run-length CSV; default ``src/train-rle.csv``.
        window: ``(center, width)`` for 8-bit conversion; default the DICOM's own window, else min-max.
        clahe: contrast-limited adaptive histogram equalisation after conversion (the pneumothorax seed's
            "contrast correction").
    """
    src = Path(src)
    csv_file = Path(csv_file) if csv_file is not None else src / "train-rle.csv"
    if not csv_file.is_file():
        raise DatasetError(f"{csv_file}: no such file.")
    runs = rle.read_runs(csv_file, "siim")
    files = sorted(src.rglob("*.dcm"), key=natural_key)
    if not files:
        raise DatasetError(f"{src}: no .dcm files found.")
    for path in files:
        try:
            subject = _patient_id(path)
            if path.stem not in runs:
                raise DatasetError(f"{path}: image has no row in {csv_file}.")
        except DatasetError as error:
            yield Sample(path.stem, path.stem, str(path), _fail(error))
            continue

        def load(path: Path = path) -> tuple[np.ndarray, np.ndarray, dict]:
            pixels, meta = read_dicom(path)
            image = to_uint8(pixels, window=window or meta.get("window"), clahe=clahe)
            mask = rle.decode_runs(runs[path.stem], image.shape, "siim").astype(bool)
            keep = {key: meta[key] for key in ("patient_id", "patient_sex", "patient_age") if meta.get(key)}
            return image, mask, keep

        yield Sample(path.stem, subject, str(path), load)


def _patient_id(path: Path) -> str:
    try:
        return str(dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"]).get("PatientID", path.stem))
    except Exception as e:  # noqa: BLE001 - any parse failure is reported the same way
        raise DatasetError(f"{path}: cannot read DICOM header ({e}).") from e


def read_folders(
    src: str | os.PathLike,
    images: str = "images",
    masks: str = "masks",
    image_suffix: str = "",
    mask_suffix: str = "",
    subject_regex: str | None = None,
    target_class: int | None = None,
    instances: bool = False,
    fov: str | None = None,
    fov_suffix: str = "",
    mask_threshold: float | None = None,
) -> Iterator[Sample]:
    """Image and mask folders paired by name: USGRA-style, DRIVE-style, nuclei-style, NIfTI/ITK slices.

    An image ``{images}/{id}{image_suffix}.{ext}`` pairs with ``{masks}/{id}{mask_suffix}.{ext2}`` (any
    supported extension, e.g. DRIVE's ``21_training.tif`` with ``21_manual1.gif``), or with a folder
    ``{masks}/{id}/`` of per-instance masks (the original nuclei layout), whose union is the mask.

    Args:
        src: root folder; ``images`` and ``masks`` are relative to it.
        images: folder of images.
        masks: folder of masks.
        image_suffix: part of the image name after the id (``"_training"`` for DRIVE).
        mask_suffix: part of the mask name after the id (``"_manual1"`` for DRIVE).
        subject_regex: a regular expression whose first group, searched in the id, names the subject
            (frames of one patient); default: each image is its own subject.
        target_class: keep this class of a class-index (palette) mask, e.g. ``1`` for the nerve in USGRA-seg.
        instances: treat any nonzero value as foreground (instance label maps).
        fov: optional folder of field-of-view masks (DRIVE's ``mask/``), kept beside each image.
        fov_suffix: part of the field-of-view mask's name after the id (``"_training_mask"`` for DRIVE).
        mask_threshold: pixels ``>=`` it are foreground, for lossy (JPEG) masks; not with ``target_class`` or
            ``instances``.
    """
    check_mask_options(target_class, instances, mask_threshold)
    src = Path(src)
    image_dir, mask_dir = src / images, src / masks
    masks_by_id: dict[str, Path] = {}
    if not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: no such folder.")
    for path in mask_dir.iterdir():
        name = path.name if path.is_dir() else file_stem(path)
        if path.is_dir() or extension(path) in IMAGE_EXTENSIONS:
            if name.endswith(mask_suffix):
                masks_by_id[name[: len(name) - len(mask_suffix)] if mask_suffix else name] = path
    found = False
    for path in list_images(image_dir, IMAGE_EXTENSIONS):
        stem = file_stem(path)
        if image_suffix and not stem.endswith(image_suffix):
            continue
        found = True
        sample_id = stem[: len(stem) - len(image_suffix)] if image_suffix else stem
        subject = sample_id
        if subject_regex is not None:
            match = re.search(subject_regex, sample_id)
            if match is None:
                raise DatasetError(f"{path}: subject_regex {subject_regex!r} does not match the id {sample_id!r}.")
            subject = match.group(1) if match.groups() else match.group(0)
        mask_path = masks_by_id.get(sample_id, mask_dir / f"{sample_id}{mask_suffix}.png")
        loader = _loader(
            path, mask_path=mask_path, target_class=target_class, instances=instances, mask_threshold=mask_threshold
        )
        if fov is not None:
            loader = _with_fov(loader, path, src / fov, f"{sample_id}{fov_suffix}")
        yield Sample(sample_id, subject, str(path), loader)
    if not found:
        raise DatasetError(f"{image_dir}: no images found ending in {image_suffix!r} with a supported extension.")
