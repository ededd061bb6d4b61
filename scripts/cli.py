"""The ``nerveseg`` command line: ``nerveseg <command> --help`` describes each command."""

from __future__ import annotations

import functools

import fire

from nerveseg.bundle import tuning
from nerveseg.bundle.data import prepare as preparation
from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.networks.checkpoints import read_state_dict, save_atomically
from nerveseg.networks.presence import gated_state_dict
from nerveseg.scripts import benchmarks
from nerveseg.scripts.progressive import progressive


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


def gate(segmenter: str, classifier: str, out: str) -> None:
    """Join a trained segmenter and presence classifier into one checkpoint for the two-stage network.

    Args:
        segmenter: the segmenter's checkpoint (``models/model.pt`` of a training run).
        classifier: the classifier's checkpoint (``models/presence/model.pt`` of configs/presence_classifier.json).
        out: the checkpoint to write (``models/gated/model.pt`` is where configs/networks/presence_gated.json looks).
    """
    try:
        segmenter_state = read_state_dict(segmenter, "Segmenter checkpoint")
        classifier_state = read_state_dict(classifier, "Classifier checkpoint")
    except ValueError as error:
        raise SystemExit(str(error)) from error
    out_path = save_atomically(gated_state_dict(segmenter_state, classifier_state), out)
    print(f"Two-stage checkpoint written to {out_path}")


def tune_gate(metrics: str = "outputs/eval/metrics.csv", out: str = "outputs/eval/gate.json") -> None:
    """Choose the presence-gate threshold that maximises the validation mean Dice, and write it as a config override.

    ``metrics`` is the per-image report of an evaluation run with the gate open (``--network_def#threshold 0``), so
    that it holds every image's presence probability and the Dice of its kept mask. Stack the written file on the
    evaluate or inference configs.

    Args:
        metrics: the evaluation report with a ``presence`` column.
        out: the override file to write (``{"network_def#threshold": ...}``).
    """
    report = tuning.read_report(metrics, column="presence")
    choice = tuning.choose_gate_threshold(report["presence"], report["dice"], report["label_area"])
    path = tuning.write_override(out, {"network_def#threshold": round(choice.threshold, 6)})
    print(f"{'gate':<22}{'threshold':>10}{'mean Dice':>11}{'emptied':>9}{'positives emptied':>19}")
    print(f"{'open':<22}{0.0:>10.4f}{choice.ungated_mean_dice:>11.4f}{0:>9}{0:>19}")
    print(
        f"{'tuned':<22}{choice.threshold:>10.4f}{choice.mean_dice:>11.4f}"
        f"{choice.gated_images:>9}{choice.gated_positives:>19}"
    )
    print(f"Override written to {path}; the score above is on the images it was tuned on.")


def main() -> None:
    fire.Fire(
        {
            "synth": synth,
            "prepare": prepare,
            "gate": gate,
            "tune-gate": tune_gate,
            "benchmark-networks": benchmarks.networks,
            "benchmark-recipe": benchmarks.recipe,
            "progressive": progressive,
        }
    )


if __name__ == "__main__":
    main()
