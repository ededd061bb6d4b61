"""The ``nerveseg`` command line: ``nerveseg <command> --help`` describes each command."""

from __future__ import annotations

import fire

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


def main() -> None:
    fire.Fire({"synth": synth})


if __name__ == "__main__":
    main()
