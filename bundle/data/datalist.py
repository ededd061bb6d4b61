"""Datalists for the bundle: find image/mask pairs, check them, hold out validation subjects.

A datalist is MONAI's decathlon-style dictionary ``{"training": [...], "validation": [...], "test": [...]}``
whose items are ``{"image": path, "label": path, "subject": str}`` (test items have no label). The files of the
splits a run reads are checked here, before any training starts, so that a bad file stops the run with one error
naming it; :mod:`nerveseg.bundle.data.checks` keeps that cheap by not reading again what was checked and has not
changed. There is no default data set: ``configs/quickstart.json`` names the synthetic one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nerveseg.bundle.data.checks import DataChecker
from nerveseg.bundle.data.io import PIL_EXTENSIONS, DatasetError, extension, file_stem, find_file
from nerveseg.utils.errors import UserInputError

MASK_SUFFIX = "_mask"
logger = logging.getLogger(__name__)
SPLITS = ("training", "validation", "test")
_STRATIFIED_DRAWS = 64
_CHALLENGE_NAME = re.compile(r"^(?P<subject>\d+)_(?P<frame>\d+)$")
_MASKS_ELSEWHERE = (
    "if the masks are elsewhere, pass a datalist JSON as datalist_file, or pair an image folder with a mask folder "
    "by name with `nerveseg prepare folders`."
)


def natural_key(path: str | os.PathLike) -> list[int | str]:
    """Sort key that orders ``2_10.tif`` after ``2_9.tif`` and ``10.tif`` after ``9.tif``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", Path(path).name)]


def subject_of(image_path: str | os.PathLike) -> str:
    """The subject of a challenge-style name ``{subject}_{frame}.tif``; any other name is its own subject."""
    stem = Path(image_path).stem
    match = _CHALLENGE_NAME.match(stem)
    return match["subject"] if match else stem


def list_images(folder: str | os.PathLike, extensions: Sequence[str] = PIL_EXTENSIONS) -> list[Path]:
    """Image files in ``folder`` with one of ``extensions`` (masks ``*_mask.*`` excluded), in natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder.")
    files = []
    for path in folder.iterdir():
        suffix = extension(path)
        if suffix in extensions and not file_stem(path).endswith(MASK_SUFFIX) and path.is_file():
            files.append(path)
    return sorted(files, key=natural_key)


def find_mask(image: str | os.PathLike, extensions: Sequence[str] = PIL_EXTENSIONS) -> Path | None:
    """The mask ``{stem}_mask.{ext}`` beside ``image`` for any of ``extensions``, the image's own first; else None."""
    image = Path(image)
    stem = file_stem(image)  # the extension as written is preferred: ``1_1.TIF`` pairs with ``1_1_mask.TIF``
    return find_file(image.parent, f"{stem}{MASK_SUFFIX}", extensions, prefer=image.name[len(stem) :])


def mask_files(folder: str | os.PathLike) -> list[Path]:
    """The files named ``*_mask.*`` in ``folder``, whatever their extension, in natural order."""
    masks = [path for path in Path(folder).iterdir() if file_stem(path).endswith(MASK_SUFFIX) and path.is_file()]
    return sorted(masks, key=natural_key)


def no_mask_error(
    image: str | os.PathLike,
    extensions: Sequence[str] = PIL_EXTENSIONS,
    found: Sequence[Path] | None = None,
    elsewhere: str = _MASKS_ELSEWHERE,
) -> DatasetError:
    """The error for an image without mask: the names tried and the masks its folder holds (``found``, else listed).

    Args:
        image: the image without ``{stem}_mask.{ext}`` beside it.
        extensions: the mask extensions that were tried.
        found: :func:`mask_files` of the image's folder, when the caller already listed it.
        elsewhere: what to do when the folder holds no mask at all.
    """
    image = Path(image)
    name = f"{file_stem(image)}{MASK_SUFFIX}"
    found = mask_files(image.parent) if found is None else found
    start = f"{image}: image has no mask (tried {name}.* with {', '.join(extensions)} beside it)"
    misnamed = [path for path in found if file_stem(path) == name]
    if misnamed and extension(misnamed[0]) in extensions:
        return DatasetError(f"{start}; rename {misnamed[0].name} to a lower-case extension.")
    if misnamed:
        return DatasetError(f"{start}; {misnamed[0].name} is in none of these formats: convert it to PNG or TIFF.")
    if not found:
        return DatasetError(f"{start}; {image.parent} holds no *{MASK_SUFFIX}.* file at all: {elsewhere}")
    examples = ", ".join(path.name for path in found[:2])
    return DatasetError(
        f"{start}; {image.parent} holds {len(found)} other mask file{'s' if len(found) > 1 else ''} (e.g. "
        f"{examples}): add this image's mask ({name}{image.name[len(file_stem(image)) :]}, say) or remove the image."
    )


def find_pairs(folder: str | os.PathLike) -> list[dict[str, str]]:
    """Pair every image ``{stem}.{ext}`` in ``folder`` with its mask ``{stem}_mask.{ext2}`` (the challenge layout).

    Any of ``PIL_EXTENSIONS`` pairs with any other (an RGB ``1_1.jpg`` with ``1_1_mask.tif``), the image's own
    extension preferred when several masks exist.

    Raises:
        DatasetError: when the folder holds no image, or an image has no mask.
    """
    images = list_images(folder)
    if not images:
        raise DatasetError(
            f"{folder}: no images found (expected {{subject}}_{{frame}}.tif with {{subject}}_{{frame}}_mask.tif, "
            "or a datalist JSON given as datalist_file)."
        )
    pairs = []
    for image in images:
        mask = find_mask(image)
        if mask is None:
            raise no_mask_error(image)
        pairs.append({"image": str(image), "label": str(mask), "subject": subject_of(image)})
    return pairs


def split_by_subject(
    items: Sequence[dict], val_fraction: float = 0.2, seed: int = 0, positive: Sequence[bool] | None = None
) -> tuple[list[dict], list[dict]]:
    """Split items into training and validation so that no subject is on both sides.

    With ``positive`` given, the split is stratified: subjects are ranked by their share of positive images
    and cut into as many consecutive groups as there are validation subjects; of several seeded draws of one
    subject per group, the one whose positive rate is closest to the whole set's is kept. Per-subject rates
    differ widely in ultrasound (2% to 89% in the nerve challenge), so a plain draw of a few subjects can
    leave validation far off the population.

    Args:
        items: datalist items with a ``subject`` key.
        val_fraction: share of the subjects (not images) that go to validation, in (0, 1).
        seed: seed of the draw; the same seed gives the same split.
        positive: per item, whether its mask has foreground.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserInputError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    subjects = sorted({item["subject"] for item in items}, key=natural_key)
    if len(subjects) < 2:
        raise DatasetError(f"a subject-grouped split needs at least 2 subjects, found {subjects}.")
    rng = np.random.default_rng(seed)
    num_val = min(len(subjects) - 1, max(1, round(val_fraction * len(subjects))))
    if positive is None:
        val_subjects = {subjects[i] for i in rng.permutation(len(subjects))[:num_val]}
    else:
        counts = {subject: [0, 0] for subject in subjects}  # positives, images
        for item, is_positive in zip(items, positive, strict=True):
            counts[item["subject"]][0] += bool(is_positive)
            counts[item["subject"]][1] += 1
        ranked = sorted(subjects, key=lambda subject: (counts[subject][0] / counts[subject][1], natural_key(subject)))
        groups = np.array_split(np.array(ranked), num_val)
        target = sum(positive) / len(positive)

        def distance(draw: list[str]) -> float:
            return abs(sum(counts[s][0] for s in draw) / sum(counts[s][1] for s in draw) - target)

        draws = [[str(group[rng.integers(len(group))]) for group in groups] for _ in range(_STRATIFIED_DRAWS)]
        val_subjects = set(min(draws, key=distance))
    training = [item for item in items if item["subject"] not in val_subjects]
    validation = [item for item in items if item["subject"] in val_subjects]
    return training, validation


def load_datalist_file(datalist_file: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> dict:
    """Read a decathlon-style datalist JSON; relative paths resolve against ``base_dir`` or the file's folder.

    ``image`` and ``label`` paths of every list, ``test`` included (``nerveseg prepare --test_fraction`` writes a
    labelled test list that evaluation scores), are resolved whether or not the file exists, so that a missing
    file is named by its full path; unlabelled test items stay unlabelled.
    """
    path = Path(datalist_file)
    if not path.is_file():
        raise DatasetError(f"{path}: datalist file does not exist.")
    try:
        keys = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e}).") from e
    if "training" not in keys:
        raise DatasetError(f"{path}: datalist has no 'training' list (keys: {sorted(keys)}).")
    from monai.data import load_decathlon_datalist  # here: `nerveseg prepare` runs without MONAI's import (seconds)

    base = str(base_dir) if base_dir is not None else str(path.parent)
    datalist = {}
    for key in ("training", "validation", "test"):
        if keys.get(key):  # MONAI's reader fails on an empty list, which `prepare` writes for a split it left empty
            # is_segmentation=True joins `label` to the base like `image`, for the items that have one; with False
            # MONAI joins a label only when that file exists, leaving a missing test mask relative to the cwd.
            datalist[key] = load_decathlon_datalist(path, True, data_list_key=key, base_dir=base)
        elif key in keys:
            datalist[key] = []
    return datalist


def build_datalist(
    dataset_dir: str | os.PathLike | None = None,
    datalist_file: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    splits: Sequence[str] = ("training", "validation"),
    mask_threshold: float | None = None,
) -> dict[str, list[dict]]:
    """Training, validation and test lists for the bundle, the files of ``splits`` checked.

    Files are checked as :mod:`nerveseg.bundle.data.checks` describes: a file that ``nerveseg prepare`` or an
    earlier run checked, and that has not changed since, is not read again.

    Args:
        dataset_dir: a folder in the nerve-challenge layout (``train/{subject}_{frame}.tif`` with
            ``_mask.tif``, any of ``PIL_EXTENSIONS`` for either, optional ``test/``), or the base folder of
            ``datalist_file``'s relative paths.
            ``configs/quickstart.json`` sets it to the synthetic dataset.
        datalist_file: a decathlon-style datalist JSON. Without a ``validation`` list, one is split off the
            training list by subject.
        val_fraction: share of subjects held out for validation when the split is made here, stratified by
            positive rate (``split_by_subject``).
        seed: seed of that split.
        splits: the lists whose files are checked: the ones the run reads (training: training and validation;
            evaluation: its ``eval_split``). Of ``test``, only the labelled items are checked: only evaluation reads
            it, and it leaves a challenge's unlabelled test images out. A split made here also needs the training
            list's mask areas, so its masks are checked then too.
        mask_threshold: ``None``: masks must be binary (0 and one other value). A number: pixels ``>=`` it are
            foreground, for lossy (JPEG) masks whose pixels scatter around 0 and 255; the training config applies
            the same threshold to the labels it loads (``AsDiscreted``), so the checked areas are the trained ones.

    Raises:
        DatasetError: no data set given, a missing folder or file, an image without mask, an unreadable image, a
            size mismatch, a non-binary mask (without ``mask_threshold``); the message names the file.
    """
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or isinstance(splits, str):
        raise UserInputError(f"splits must name some of {list(SPLITS)}, got {splits!r}.")
    if dataset_dir is None and datalist_file is None:
        raise DatasetError(
            "no data set: set dataset_dir (a folder in the challenge layout, train/{subject}_{frame}.tif with "
            "_mask.tif) or datalist_file (a datalist JSON, e.g. from `nerveseg prepare`), e.g. --dataset_dir "
            "/data/ultrasound-nerve; for the Quick start's synthetic data stack configs/quickstart.json: "
            "--config_file \"['configs/train.json','configs/quickstart.json']\"."
        )
    datalist = _find_items(dataset_dir, datalist_file)
    folder = dataset_dir if dataset_dir is not None else Path(datalist_file).parent
    checker = DataChecker.for_folder(folder, datalist_file, mask_threshold=mask_threshold)
    try:
        checked = set()
        if "validation" not in datalist:
            training = datalist["training"]
            if "training" in splits:
                areas, checked = checker.items(training, "Checking training"), {"training", "validation"}
            else:
                areas = checker.foregrounds(training)
            positive = [area > 0 for area in areas]
            datalist["training"], datalist["validation"] = split_by_subject(training, val_fraction, seed, positive)
        for split in SPLITS:
            if split in splits and split not in checked:
                scored = [item for item in datalist[split] if split != "test" or "label" in item]
                checker.items(scored, f"Checking {split}")
    finally:
        checker.save()
    return datalist


def labelled_items(datalist: dict[str, list[dict]], split: str) -> list[dict]:
    """The items of ``datalist[split]`` that have a label, to evaluate on (``evaluate.json``'s ``eval_split``).

    A ``test`` list may mix labelled images (``nerveseg prepare --test_fraction``) with a challenge's unlabelled
    test images; those are left out, and counted in the log.

    Raises:
        UserInputError: none of the split's items has a label.
    """
    items = [item for item in datalist[split] if "label" in item]
    if not items:
        raise UserInputError(
            f"eval_split is {split!r}, but none of its {len(datalist[split])} images has a label to score against; "
            "evaluate a labelled split (--eval_split validation), or hold out labelled subjects as test with "
            "`nerveseg prepare --test_fraction 0.1` or `--test_subjects`."
        )
    if len(items) < len(datalist[split]):
        logger.info(f"Evaluating the {len(items)} labelled images of {split!r}; {len(datalist[split]) - len(items)} "
                    "have no label and are left out.")  # fmt: skip
    return items


def _find_items(dataset_dir: str | os.PathLike | None, datalist_file: str | os.PathLike | None) -> dict:
    """The datalist's items, not yet checked: from ``datalist_file`` or the challenge layout of ``dataset_dir``."""
    if dataset_dir is not None and not Path(dataset_dir).is_dir():
        raise DatasetError(f"dataset_dir {dataset_dir}: no such folder.")
    if datalist_file is not None:
        datalist = load_datalist_file(datalist_file, base_dir=dataset_dir)
        for item in datalist["training"] + datalist.get("validation", []):
            item.setdefault("subject", subject_of(item["image"]))
    else:
        root = Path(dataset_dir)
        train_dir = root / "train" if (root / "train").is_dir() else root
        datalist = {"training": find_pairs(train_dir)}
        if (root / "test").is_dir():
            datalist["test"] = [{"image": str(path)} for path in list_images(root / "test")]
    datalist.setdefault("test", [])
    return datalist


def build_inference_list(
    input_dir: str | os.PathLike | None = None, dataset_dir: str | os.PathLike | None = None
) -> list[dict[str, str]]:
    """Images to predict: those in ``input_dir``, else in ``dataset_dir/test``; each checked (or unchanged since).

    Raises:
        DatasetError: when neither is given, the folder does not exist, holds no image, or an image cannot be read.
    """
    if input_dir is None and dataset_dir is None:
        raise DatasetError(
            "no images to predict: set input_dir (a folder of images), or dataset_dir (its test/ folder is read), "
            "e.g. --input_dir /data/ultrasound-nerve/test; for the Quick start's synthetic test images stack "
            "configs/quickstart.json: --config_file \"['configs/inference.json','configs/quickstart.json']\"."
        )
    if input_dir is None:
        input_dir = Path(dataset_dir) / "test"
    images = list_images(input_dir)
    if not images:
        kinds = ", ".join(PIL_EXTENSIONS)
        raise DatasetError(f"{input_dir}: no images found ({kinds}; files ending in _mask are skipped).")
    items = [{"image": str(path)} for path in images]
    checker = DataChecker.for_folder(input_dir)
    try:
        checker.items(items)
    finally:
        checker.save()
    return items
