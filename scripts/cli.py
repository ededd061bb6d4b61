"""The ``nerveseg`` command line: ``nerveseg <command> --help`` describes each command."""

from __future__ import annotations

import ast
import functools
import shlex

import fire

from nerveseg.bundle import submissions, tuning
from nerveseg.bundle.data import prepare as preparation
from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.networks.checkpoints import read_state_dict, save_atomically
from nerveseg.networks.presence import gated_state_dict
from nerveseg.scripts import active_learning, benchmarks, performance
from nerveseg.scripts.label_app.layout import label_app
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


def tune_postprocessing(
    config_file: str = "['configs/train.json','configs/evaluate.json']",
    out: str = "outputs/eval/postprocessing.json",
    overrides: str = "",
) -> None:
    """Choose threshold, minimum mask area and presence gate on the validation split; write them as an override.

    Runs the evaluation config once, keeps every validation image's probability map at its original size, and
    searches the grid for the best challenge mean Dice (the gate only when the network gives a presence logit:
    MUNet, the two-stage model). Stack the written file on evaluate or inference configs.

    Args:
        config_file: the evaluation's config stack, as for ``monai.bundle`` (add ``configs/asme.json`` to tune
            for the ensemble).
        out: the override file to write.
        overrides: more ``monai.bundle`` arguments, as one string: ``--overrides="--ckpt_dir models/munet"``.
    """
    arguments = shlex.split(overrides)
    if len(arguments) % 2:
        raise SystemExit(f"overrides must be pairs of --key value, got {arguments}.")
    pairs = {key.lstrip("-"): _config_value(value) for key, value in zip(arguments[::2], arguments[1::2], strict=True)}
    probabilities, labels, presence = tuning.validation_probabilities(_config_list(config_file), pairs)
    best, default = tuning.choose_postprocessing(probabilities, labels, presence)
    path = tuning.write_override(
        out, {"threshold": best.threshold, "min_area": best.min_area, "gate_threshold": best.gate_threshold}
    )
    print(f"{len(labels)} validation images; presence gate {'searched' if presence else 'not available'}")
    print(f"{'setting':<10}{'threshold':>10}{'min_area':>10}{'gate':>7}{'mean Dice':>11}")
    for name, choice in (("default", default), ("tuned", best)):
        print(
            f"{name:<10}{choice.threshold:>10.2f}{choice.min_area:>10}{choice.gate_threshold:>7.2f}{choice.mean_dice:>11.4f}"
        )
    print(f"Override written to {path}; the tuned score is measured on the images it was tuned on.")


def submission(
    masks: str = "outputs/predictions",
    out: str = "outputs/submission.csv",
    challenge: str = "nerve",
    shape: tuple[int, int] | None = None,
) -> None:
    """Write a challenge submission CSV from the masks the inference config saved.

    Args:
        masks: the inference output folder (``{id}_mask.tif`` at the original image size).
        out: the CSV to write (through a temporary file).
        challenge: ``nerve`` (``img,pixels``, ids sorted numerically, empty string for no nerve) or
            ``pneumothorax`` (``ImageId,EncodedPixels``, ``-1`` for no pneumothorax).
        shape: ``[height, width]`` every mask must have; by default the challenge's (420x580, 1024x1024).
    """
    writers = {"nerve": submissions.write_nerve_submission, "pneumothorax": submissions.write_siim_submission}
    if challenge not in writers:
        raise SystemExit(f"challenge {challenge!r} is unknown; choose one of {', '.join(writers)}.")
    try:
        read = submissions.read_masks_folder(masks)
        path = writers[challenge](read, out, **({} if shape is None else {"shape": tuple(shape)}))
    except ValueError as error:
        raise SystemExit(str(error)) from error
    empty = sum(1 for mask in read.values() if not mask.any())
    print(f"{challenge} submission of {len(read)} images ({empty} empty) written to {path}")


def _config_list(config_file: str | list) -> list[str]:
    return list(config_file) if isinstance(config_file, (list, tuple)) else list(ast.literal_eval(config_file))


def _config_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    fire.Fire(
        {
            "synth": synth,
            "prepare": prepare,
            "gate": gate,
            "tune-postprocessing": tune_postprocessing,
            "submission": submission,
            "bench": performance.bench,
            "benchmark-networks": benchmarks.networks,
            "benchmark-recipe": benchmarks.recipe,
            "benchmark-inference": benchmarks.inference,
            "benchmark-active-learning": active_learning.simulate,
            "label-app": label_app,
            "progressive": progressive,
        }
    )


if __name__ == "__main__":
    main()
