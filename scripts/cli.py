"""The ``nerveseg`` command line: ``nerveseg <command> --help`` describes each command."""

from __future__ import annotations

import functools

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


@functools.wraps(preparation.prepare)
def prepare(*args, **kwargs) -> None:
    report = preparation.prepare(*args, **kwargs)
    print(f"Prepared {report['converted']} images from {report['src']} into {report['datalist']}")
    print(f"{'split':<12}{'images':>8}{'subjects':>10}{'positive':>10}")
    for name, split in report["splits"].items():
        rate = "-" if split["positive_rate"] is None else f"{split['positive_rate']:.1%}"
        print(f"{name:<12}{split['images']:>8}{split['subjects']:>10}{rate:>10}")
    conflicting = sum(pair["conflicting"] for pair in report["duplicate_pairs"])
    print(
        f"duplicates: {len(report['duplicate_pairs'])} pairs, {conflicting} with conflicting masks, "
        f"{len(report['dropped_duplicates'])} images dropped ({report['parameters']['duplicates']})"
    )
    for problem in report["bad_files"]:
        print(f"skipped: {problem}")


def main() -> None:
    fire.Fire({"synth": synth, "prepare": prepare})


if __name__ == "__main__":
    main()
