"""``nerveseg prepare``: turn a dataset layout into checked 8-bit PNGs and a leakage-free MONAI datalist.

The steps: list the samples of a format (and check any subjects the user names against them), load and convert
each (8-bit grayscale image, 0/255 mask), clean duplicate frames whose masks conflict, hold out test subjects (the
given ones, or a stratified random share), split validation off (the given subjects, or one of the subject-grouped
stratified folds), optionally balance positives 1:1 in training, then write ``datalist.json``, ``report.json``
(with each split's subjects), ``report.png`` and ``checked.json``. Everything is written into a temporary sibling
folder that replaces the output folder only when complete, so an interrupted run leaves the previous output intact
and a rerun gives the same result.

Every image and mask is checked as it is converted (readable, 2D, a binary mask of its image's size).
``checked.json`` records each file written (path relative to the folder, byte size, modification time, shape, and
the mask's foreground pixel count), so that training and evaluation runs on the datalist trust the files that
have not changed since instead of reading them again (:mod:`nerveseg.bundle.data.checks`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from nerveseg.bundle.data import layouts
from nerveseg.bundle.data.checks import RECORD_NAME, CheckRecord
from nerveseg.bundle.data.duplicates import POLICIES, drop_duplicates, find_duplicates
from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.data.splits import (
    assign_folds,
    balance_positives,
    check_subjects,
    hold_out_subjects,
    read_subjects,
    sorted_subjects,
    split_off_subjects,
)
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path
from nerveseg.utils.progress import progress

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot is imported

logger = logging.getLogger(__name__)

READERS = {"nerve": layouts.read_nerve, "pneumothorax": layouts.read_pneumothorax, "folders": layouts.read_folders}
REPORT = "report.json"


def prepare(
    fmt: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    num_folds: int = 5,
    val_fold: int = 0,
    test_fraction: float = 0.0,
    seed: int = 0,
    balance: bool = False,
    duplicates: str = "drop_negative",
    skip_bad: bool = False,
    test_subjects: str | os.PathLike | Sequence[str | int] | int | None = None,
    val_subjects: str | os.PathLike | Sequence[str | int] | int | None = None,
    **reader_options,
) -> dict:
    """Prepare a dataset; return the report (also written to ``report.json`` beside the datalist).

    Args:
        fmt: ``"nerve"``, ``"pneumothorax"`` or ``"folders"`` (see ``nerveseg.bundle.data.layouts``).
        src: the dataset's root folder.
        out: the datalist to write, ``{folder}/datalist.json``; ``{folder}`` receives ``images/``, ``masks/``
            and the report, and must be new, empty, or an earlier output of this command.
        num_folds: subject-grouped folds, stratified by positive rate; not used with ``val_subjects``.
        val_fold: the fold written as ``validation``; the others are ``training``. Not used with ``val_subjects``.
        test_fraction: share of subjects held out as ``test`` (0 for none); 0 with ``test_subjects``.
        seed: seed of the hold-out, folds and balancing.
        balance: keep as many negatives as positives in ``training`` (the nerve seed's 1:1).
        duplicates: what to do with duplicate frames whose masks conflict: ``"drop_negative"`` (the nerve
            seed's), ``"drop_both"`` or ``"keep"``.
        skip_bad: list a bad file as a warning and go on, instead of stopping at the first.
        reader_options: passed to the format's reader. ``nerve``: ``csv_file`` (``train_masks.csv``),
            ``mask_threshold`` (lossy masks: pixels >= it are foreground). ``pneumothorax``: ``csv_file``
            (``train-rle.csv``), ``window`` (center, width), ``clahe``. ``folders``: ``images``, ``masks``,
            ``image_suffix``, ``mask_suffix``, ``subject_regex``, ``target_class`` (class-index masks),
            ``instances`` (instance maps), ``mask_threshold``, ``fov``, ``fov_suffix``.
        test_subjects: the subjects whose labelled images form ``test`` (a published split), instead of
            ``test_fraction``: a list of names (``--test_subjects "[1,2]"`` or ``1,2``) or a text file with one
            name per line (blank lines and ``#`` comments ignored). A subject is the ``{subject}`` of the nerve
            challenge's ``{subject}_{frame}``, the DICOM PatientID, or what ``subject_regex`` matches.
        val_subjects: the subjects that form ``validation``, in the same forms; every other subject kept is
            ``training``. Folds are then not made: items carry no ``fold``, the report's ``folds`` is empty and its
            ``num_folds`` and ``val_fold`` are null.

    Raises:
        DatasetError: a bad file (unless ``skip_bad``), naming it and the problem; a subject list naming a subject
            the data lacks, a subject in both lists, a given subject left without labelled images, or no subject
            left for training. Subject lists are checked before anything is written.
        UserInputError: an unknown format or policy, folds that do not fit the data, ``test_subjects`` with a
            ``test_fraction``, or an output folder holding files that this command did not write.
    """
    if fmt not in READERS:
        raise UserInputError(f"unknown format {fmt!r}; choose one of {sorted(READERS)}.")
    if duplicates not in POLICIES:
        raise UserInputError(f"unknown duplicates policy {duplicates!r}; choose one of {POLICIES}.")
    if test_subjects is not None and test_fraction > 0:
        raise UserInputError(
            f"test_subjects and test_fraction={test_fraction} both choose the test set; give one of them "
            "(test_fraction=0 with test_subjects)."
        )
    given = {"test_subjects": read_subjects(test_subjects, "test_subjects")}
    given["val_subjects"] = read_subjects(val_subjects, "val_subjects")
    if given["val_subjects"][0] is None and not 0 <= val_fold < num_folds:
        raise UserInputError(f"val_fold must be in [0, {num_folds}), got {val_fold}.")
    out = Path(out)
    if out.suffix != ".json":
        raise UserInputError(
            f"--out must name the datalist JSON to write (e.g. prepared/usgra/datalist.json), got {out}."
        )
    root = out.parent.absolute()
    if root.exists() and any(root.iterdir()) and not (root / REPORT).is_file():
        raise UserInputError(
            f"{root} holds files that `nerveseg prepare` did not write; choose a new or empty folder for --out."
        )
    samples = list(READERS[fmt](Path(src), **reader_options))
    check_subjects({key: names for key, (names, _) in given.items() if names is not None}, {s.subject for s in samples})
    options = (num_folds, val_fold, test_fraction, seed, balance, duplicates, skip_bad, reader_options, given)
    with atomic_path(root) as partial:
        return _prepare_into(partial, root / out.name, fmt, Path(src), samples, *options)


def _prepare_into(
    folder: Path,
    datalist_path: Path,
    fmt: str,
    src: Path,
    samples: Sequence[layouts.Sample],
    num_folds: int,
    val_fold: int,
    test_fraction: float,
    seed: int,
    balance: bool,
    policy: str,
    skip_bad: bool,
    reader_options: dict,
    given: dict[str, tuple[list[str] | None, str | None]],
) -> dict:
    for name in ("images", "masks"):
        (folder / name).mkdir(parents=True)
    record = CheckRecord(folder, folder / RECORD_NAME)
    labelled, unlabelled, bad = [], [], []
    seen: dict[str, str] = {}
    for sample in progress(samples, f"Converting {fmt}"):
        if sample.id in seen:
            raise DatasetError(f"{sample.source}: id {sample.id!r} is also used by {seen[sample.id]}.")
        seen[sample.id] = sample.source
        try:
            image, mask, meta = sample.load()
        except ValueError as e:  # DatasetError, or a run-length row that does not decode
            if not skip_bad:
                raise
            bad.append(str(e))
            logger.warning(f"skipped: {e}")
            continue
        item = {"image": _save(folder, "images", sample.id, image), "subject": sample.subject}
        record.add(item["image"], image.shape)
        if "fov" in meta:
            item["fov"] = _save(folder, "fov", sample.id, meta.pop("fov"))
        item.update(meta)
        if mask is None:
            unlabelled.append(item)
            continue
        item["label"] = _save(folder, "masks", sample.id, mask)
        item["area"] = int(np.count_nonzero(mask))
        record.add(item["label"], mask.shape, item["area"])
        labelled.append(item)
    if not labelled:
        raise DatasetError(f"{src}: no labelled image could be prepared ({len(bad)} bad).")

    pairs = find_duplicates(labelled)
    kept, dropped = drop_duplicates(labelled, pairs, policy)
    (test_names, test_file), (val_names, val_file) = given["test_subjects"], given["val_subjects"]
    _check_left(kept, test_names, val_names)
    test: list[dict] = []
    validation = []
    if val_names is not None:  # set aside first, so that a random test share is drawn from the other subjects
        kept, validation = split_off_subjects(kept, val_names)
    if test_names is not None:
        kept, test = split_off_subjects(kept, test_names)
    elif test_fraction > 0:
        kept, test = hold_out_subjects(kept, test_fraction, seed, _positive(kept))
    folds = range(num_folds if val_names is None else 0)  # a given validation makes no folds
    if val_names is None:
        for item, fold in zip(kept, assign_folds(kept, num_folds, seed, _positive(kept)), strict=True):
            item["fold"] = int(fold)
        training = [item for item in kept if item["fold"] != val_fold]
        validation = [item for item in kept if item["fold"] == val_fold]
    else:
        training = kept
    development = training + validation  # every labelled split but test, before balancing
    if balance:
        training = balance_positives(training, _positive(training), seed)
    datalist = {"training": training, "validation": validation, "test": test + unlabelled}

    report = {
        "format": fmt,
        "src": str(src.absolute()),
        "datalist": str(datalist_path),
        "parameters": {
            "num_folds": num_folds if val_names is None else None,
            "val_fold": val_fold if val_names is None else None,
            "val_subjects": val_names,
            **({"val_subjects_file": val_file} if val_file else {}),
            "test_fraction": test_fraction,
            "test_subjects": test_names,
            **({"test_subjects_file": test_file} if test_file else {}),
            "seed": seed,
            "balance": balance,
            "duplicates": policy,
            **reader_options,
        },  # fmt: skip
        "converted": len(labelled) + len(unlabelled),
        "bad_files": bad,
        "duplicate_pairs": [vars(pair) | {"first": _id(pair.first), "second": _id(pair.second)} for pair in pairs],
        "dropped_duplicates": [_id(item["image"]) for item in dropped],
        "splits": {name: _summary(items) for name, items in datalist.items()},
        "subjects": {name: _subjects(items) for name, items in datalist.items()},
        "folds": {str(k): _summary([i for i in kept if i["fold"] == k]) for k in folds},
    }
    _plot(development, folder / "report.png")
    relative = {name: [_relative(item, folder) for item in items] for name, items in datalist.items()}
    (folder / datalist_path.name).write_text(json.dumps(relative, indent=1) + "\n")
    (folder / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    record.save()
    return report


def _check_left(kept: Sequence[dict], test_names: list[str] | None, val_names: list[str] | None) -> None:
    """Every given subject still has labelled images, and some subject is left for training."""
    subjects = {item["subject"] for item in kept}
    for parameter, names in (("test_subjects", test_names), ("val_subjects", val_names)):
        empty = [name for name in names or () if name not in subjects]
        if empty:
            raise DatasetError(
                f"{parameter}: no labelled image is left of {', '.join(map(repr, empty[:5]))} (bad files skipped, or "
                f"duplicates dropped); remove them from {parameter}, or fix their files."
            )
    named = [p for p, names in (("test_subjects", test_names), ("val_subjects", val_names)) if names is not None]
    if named and not subjects - set(test_names or ()) - set(val_names or ()):
        raise DatasetError(
            f"{' and '.join(named)} name all {len(subjects)} subjects with labelled images; leave some for training."
        )


def _save(folder: Path, kind: str, sample_id: str, array: np.ndarray) -> str:
    path = folder / kind / f"{sample_id}.png"
    path.parent.mkdir(exist_ok=True)
    data = array if array.dtype == np.uint8 else (array > 0).astype(np.uint8) * 255
    Image.fromarray(data).save(path)
    return str(path)


def _id(image_path: str) -> str:
    return Path(image_path).stem


def _relative(item: dict, folder: Path) -> dict:
    return {key: os.path.relpath(value, folder) if key in ("image", "label", "fov") else value
            for key, value in item.items()}  # fmt: skip


def _positive(items: Sequence[dict]) -> list[bool]:
    return [item["area"] > 0 for item in items]


def _subjects(items: Sequence[dict]) -> list[str]:
    """The subjects of the labelled items, in natural order: what ``test_subjects``/``val_subjects`` would name."""
    return sorted_subjects({item["subject"] for item in items if "area" in item})


def _summary(items: Sequence[dict]) -> dict:
    labelled = [item for item in items if "area" in item]
    return {
        "images": len(items),
        "subjects": len({item["subject"] for item in items}),
        "positive_rate": round(float(np.mean(_positive(labelled))), 4) if labelled else None,
    }


def _plot(items: Sequence[dict], path: Path) -> None:
    """Mask-area histogram and per-subject positive rate, the two numbers that shape a split."""
    areas = [item["area"] for item in items if item["area"] > 0]
    by_subject: dict[str, list[bool]] = {}
    for item in items:
        by_subject.setdefault(item["subject"], []).append(item["area"] > 0)
    rates = sorted(float(np.mean(v)) for v in by_subject.values())
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.hist(areas, bins=30, color="tab:blue")
    left.set(title=f"Mask area of {len(areas)} positive images", xlabel="pixels", ylabel="images")
    right.bar(range(len(rates)), rates, color="tab:orange")
    right.set(title=f"Positive rate of {len(rates)} subjects", xlabel="subject (sorted)", ylabel="share positive")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
