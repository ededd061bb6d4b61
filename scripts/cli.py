"""The ``nerveseg`` command line: ``nerveseg <command> --help`` describes each command."""

from __future__ import annotations

import fire

from nerveseg.bundle.data import prepare as preparation
from nerveseg.bundle.data.synthetic import generate_dataset


def synth(out: str, num_subjects: int = 16, frames_per_subject: int = 30, num_test_images: int = 40, seed: int = 0):
    """Generate the synthetic nerve-ultrasound dataset (the bundle's default data) into a new folder.

    Args:
        out: folder to create; it must not exist or be empty.
        num_subjects: subjects in ``train/``.
        frames_per_subject: consecutive frames per subject.
        num_test_images: unlabelled images in ``test/``.
        seed: the same seed gives byte-identical files.
    """
    path = generate_dataset(out, num_subjects, frames_per_subject, num_test_images, seed)
    print(f"Synthetic dataset written to {path} (summary in {path / 'dataset.json'}).")


def prepare(
    fmt: str,
    src: str,
    out: str,
    num_folds: int = 5,
    val_fold: int = 0,
    test_fraction: float = 0.0,
    seed: int = 0,
    balance: bool = False,
    duplicates: str = "drop_negative",
    skip_bad: bool = False,
    **reader_options,
):
    """Convert a dataset into checked PNGs and a subject-grouped MONAI datalist for the bundle.

    Formats: ``nerve`` (challenge ``train/{subject}_{img}.tif`` with ``_mask.tif`` or ``--csv_file
    train_masks.csv``), ``pneumothorax`` (DICOM files with ``--csv_file train-rle.csv``; ``--window "[c, w]"``,
    ``--clahe``), ``folders`` (``--images images --masks masks``, ``--image_suffix``, ``--mask_suffix``,
    ``--target_class 1`` for class-index masks, ``--instances`` for instance maps, ``--subject_regex``, ``--fov``).
    Train on the result with ``--datalist_file OUT``.

    Args:
        fmt: ``nerve``, ``pneumothorax`` or ``folders``.
        src: the dataset's root folder.
        out: the datalist to write, e.g. ``prepared/usgra/datalist.json``.
        num_folds: subject-grouped folds stratified by positive rate.
        val_fold: the fold written as ``validation``.
        test_fraction: share of subjects held out as ``test``.
        seed: seed of the hold-out, folds and balancing.
        balance: keep as many negatives as positives in ``training``.
        duplicates: ``drop_negative``, ``drop_both`` or ``keep`` for duplicate frames with conflicting masks.
        skip_bad: list bad files as warnings instead of stopping at the first.
    """
    report = preparation.prepare(
        fmt, src, out, num_folds, val_fold, test_fraction, seed, balance, duplicates, skip_bad, **reader_options
    )
    print(f"Prepared {report['converted']} images from {report['src']} into {out}")
    print(f"{'split':<12}{'images':>8}{'subjects':>10}{'positive':>10}")
    for name, split in report["splits"].items():
        rate = "-" if split["positive_rate"] is None else f"{split['positive_rate']:.1%}"
        print(f"{name:<12}{split['images']:>8}{split['subjects']:>10}{rate:>10}")
    conflicting = sum(pair["conflicting"] for pair in report["duplicate_pairs"])
    print(
        f"duplicates: {len(report['duplicate_pairs'])} pairs, {conflicting} with conflicting masks, "
        f"{len(report['dropped_duplicates'])} images dropped ({duplicates})"
    )
    for problem in report["bad_files"]:
        print(f"skipped: {problem}")


def main() -> None:
    fire.Fire({"synth": synth, "prepare": prepare})


if __name__ == "__main__":
    main()
