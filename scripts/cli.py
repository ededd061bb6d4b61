"""The ``nerveseg`` command line: ``nerveseg <command> --help`` describes each command.

Only the named command's module is imported: ``nerveseg --help``, ``prepare``, ``submit`` and ``synth`` start without
torch and MONAI, whose imports take seconds with every extra installed.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence

import fire

from nerveseg.bundle.data import prepare as preparation
from nerveseg.bundle.data import submissions
from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.bundle.logs import report_errors
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import read_state_dict, save_state_dict

COMMANDS = {
    "synth": (
        "nerveseg.scripts.cli:synth",
        "Generate the synthetic nerve-ultrasound dataset (the Quick start's data) into a new folder.",
    ),
    "prepare": (
        "nerveseg.scripts.cli:prepare",
        "Prepare a dataset; return the report (also written to ``report.json`` beside the datalist).",
    ),
    "tune": (
        "nerveseg.scripts.cli:tune",
        "Choose threshold, minimum mask area and presence gate on the validation split; write them as an override.",
    ),
    "gate": (
        "nerveseg.scripts.cli:gate",
        "Join a trained segmenter and presence classifier into one checkpoint for the two-stage network.",
    ),
    "submit": (
        "nerveseg.scripts.cli:submit",
        "Write a challenge submission CSV from the masks the inference config saved.",
    ),
    "progressive": (
        "nerveseg.scripts.progressive:progressive",
        "Train at increasing image sizes, each stage starting from the previous stage's best checkpoint.",
    ),
    "label-app": (
        "nerveseg.scripts.label_app.layout:label_app",
        "Lay out a MONAI Label app and studies folder for this bundle and print (or run) the offline start command.",
    ),
    "bench": ("nerveseg.scripts.bench:bench", "Run one benchmark part, or with no part the full suite."),
    "live": (
        "nerveseg.scripts.cli:live",
        "Segment a video, a folder of frames, or a live stream one frame at a time, as a probe gives them.",
    ),
    "quantize": (
        "nerveseg.scripts.quantize:quantize",
        "Quantize the checkpoint's OpenVINO model to int8 with NNCF, calibrated and checked on a labelled split.",
    ),
}
"""Each command's function, as ``module:name``, and the first sentence of its docstring: ``nerveseg --help`` lists
them without importing every command's module (torch's and MONAI's imports take seconds)."""


def synth(out: str, num_subjects: int = 16, frames_per_subject: int = 30, num_test_images: int = 40, seed: int = 0):
    """Generate the synthetic nerve-ultrasound dataset (the Quick start's data) into a new folder.

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
    chosen = report["parameters"]
    if chosen["test_subjects"]:
        test = f"the {len(chosen['test_subjects'])} given test_subjects"
    elif chosen["test_fraction"]:
        test = f"test_fraction {chosen['test_fraction']} of the subjects, drawn at random (seed {chosen['seed']})"
    else:
        test = "no labelled images (test_fraction 0)"
    if chosen["val_subjects"]:
        validation = f"the {len(chosen['val_subjects'])} given val_subjects (no folds)"
    else:
        validation = f"fold {chosen['val_fold']} of {chosen['num_folds']} subject-grouped folds (seed {chosen['seed']})"
    print(f"test: {test}; validation: {validation}; the subjects of each split are in report.json")
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
    from nerveseg.networks.presence_gated import gated_state_dict

    try:
        segmenter_state = read_state_dict(segmenter, "Segmenter checkpoint")
        classifier_state = read_state_dict(classifier, "Classifier checkpoint")
    except ValueError as error:
        raise SystemExit(str(error)) from error
    out_path = save_state_dict(gated_state_dict(segmenter_state, classifier_state), out)
    print(f"Two-stage checkpoint written to {out_path}")


def tune(
    config_file: str = "['configs/train.json','configs/evaluate.json','configs/tune.json']",
    out: str | None = None,
    overrides: str = "",
) -> None:
    """Choose threshold, minimum mask area and presence gate on the validation split; write them as an override.

    Runs the ``tuning`` workflow of ``configs/tune.json`` in this process, as ``python -m monai.bundle run tuning``
    would: the evaluation keeps every validation image's probability map at its original size, and the grid is
    searched for the best challenge mean Dice (the gate only when the network gives a presence logit: MUNet, the
    two-stage model). Stack the written file on evaluate or inference configs.

    Args:
        config_file: the evaluation's config stack with ``configs/tune.json`` on it, as for ``monai.bundle`` (add
            ``configs/asme.json`` to tune for the ensemble, a network override for another network).
        out: the override file to write (config key ``tuned_postprocessing_path``); by default
            ``eval/postprocessing.json`` under the config's ``output_dir``.
        overrides: more ``monai.bundle`` arguments, as one string: ``--overrides="--ckpt_dir models/munet"``.
    """
    from nerveseg.bundle import runs

    settings = runs.parse_overrides(overrides)
    if out is not None:
        settings[runs.TUNED_OVERRIDE_ID] = str(out)
    configs = runs.parse_config_list(config_file)
    if "tuning" not in runs.read_config(configs):
        raise UserInputError(f"{configs} define no 'tuning' workflow; stack configs/tune.json on them.")
    workflow = runs.run_workflow(configs, "tuning", settings, console=True)
    search = workflow.parser.get_parsed_content("validate#postprocessing_search")
    print(search.summary())
    print(f"Override written to {search.output_path}")


def submit(
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


def live(
    source: str,
    out: str = "outputs/live",
    checkpoint: str | None = None,
    config_file: str = "['configs/inference.json']",
    smoothing: float = 0.0,
    overrides: str = "",
    input_format: str | None = None,
    input_options: dict | None = None,
    max_frames: int | None = None,
    view: str | None = None,
) -> None:
    """Segment a video, a folder of frames, or a live stream one frame at a time, as a probe gives them.

    Writes the frames with the structure's outline drawn (a video for a video or stream, PNG files for a folder),
    ``latency.csv`` (each frame's milliseconds from decoded frame to mask) and ``live.json``; prints the median and
    99th percentile latency and the frames per second. The model is inference.json's with the checkpoint's weights,
    at the size it was trained at. A stream or device is segmented at its newest frame each time: frames that came
    while the network ran are skipped (counted), not queued. Ctrl-C, or a source that breaks, stops the run and keeps
    what was segmented. Videos and streams need PyAV: pip install -e '.[live]'.

    Args:
        source: a video file, a folder of frame images, a stream address (``rtsp://...``, ``udp://...``) or a
            capture device of ``input_format`` (``/dev/video0``).
        out: the output folder.
        checkpoint: the weights; by default ``models/model.pt``.
        config_file: the config stack, inference.json first, then override files.
        smoothing: the weight of earlier frames' probabilities, in [0, 1); 0 segments each frame alone.
        overrides: more config values, as one string: ``--overrides="--inference_backend torch"``.
        input_format: FFmpeg's input format of a capture device: ``v4l2``, ``avfoundation``, ``dshow``, ``x11grab``,
            or ``lavfi`` for a generated test source (``"testsrc=size=580x420:rate=30"``).
        input_options: FFmpeg's options for the input: ``--input_options "{'video_size': '640x480'}"``.
        max_frames: stop after this many frames; by default at the end of the source, or Ctrl-C.
        view: an address to send the outlined frames to as they are made (MPEG-TS), for a player to show live:
            ``--view "udp://127.0.0.1:5001?pkt_size=1316"`` and ``ffplay udp://127.0.0.1:5001`` (or VLC).
    """
    from nerveseg.bundle import runs
    from nerveseg.scripts.live import live as run_live

    run_live(
        str(source),  # fire reads a device number (avfoundation's 0) as an int
        str(out),
        checkpoint=checkpoint,
        configs=runs.parse_config_list(config_file),
        smoothing=smoothing,
        overrides=runs.parse_overrides(overrides),
        input_format=input_format,
        input_options=input_options,
        max_frames=max_frames,
        view=None if view is None else str(view),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command, importing only its module; an error about the user's input ends the output with its own
    message. Without a command, or with ``--help``, list the commands."""
    report_errors()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_listing())
        return
    if argv[0] not in COMMANDS:
        raise UserInputError(
            f"nerveseg has no command {argv[0]!r}; choose one of {', '.join(COMMANDS)} (nerveseg --help lists them)."
        )
    fire.Fire({argv[0]: _command(argv[0])}, argv, name="nerveseg")


def _listing() -> str:
    """The commands and their summaries, as ``nerveseg --help`` prints them."""
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: nerveseg COMMAND [--flag value ...]; nerveseg COMMAND --help describes one.", "", "commands:"]
    lines += [f"  {name:<{width}}{summary.replace('``', '')}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def _command(name: str) -> Callable:
    module, function = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), function)


if __name__ == "__main__":
    main()
