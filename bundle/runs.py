"""The package's one way to a bundle run: config files plus overrides, read or run in this process.

A run here is what ``python -m monai.bundle run ID --config_file "[...]" --key value`` would do, and is built the
same way: a stack of the bundle's config files and id-value overrides, never a parsed config edited in code. The
commands (``nerveseg tune``, ``progressive``, ``bench``), the MONAI Label app and the tests all come through here,
so ``ConfigParser`` is built in one place. Runs are sequential in one process (no interpreter and import start-up
per run); each sets its own seed in its config's ``initialize`` and logs into its own file (``run_log``:
``train.log``, ``eval/evaluate.log``), which its ``finalize`` closes, or :func:`run_workflow` when it fails.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from torch import nn

from nerveseg.utils.errors import UserInputError

__all__ = [
    "TUNE_CONFIG",
    "TUNED_OVERRIDE_ID",
    "build_network",
    "config_files",
    "evaluate",
    "parse_config_list",
    "parse_overrides",
    "read_config",
    "run_workflow",
    "train",
    "tune",
]

WORKFLOW_TYPES = {"training": "train", "evaluating": "eval", "tuning": "eval", "inference": "infer"}
"""The run ids of the bundle's configs and the ``ConfigWorkflow`` type of each."""

TUNE_CONFIG = "configs/tune.json"
"""Stacked on train.json + evaluate.json (+ an inferer override), its ``tuning`` run chooses the post-processing."""

TUNED_OVERRIDE_ID = "tuned_postprocessing_path"
"""The id in configs/tune.json of the override file the tuning run writes (threshold, min_area, gate_threshold)."""


def config_files(bundle_root: str | os.PathLike, *names: str | os.PathLike) -> list[str]:
    """Absolute paths of config files given relative to ``bundle_root`` (``configs/train.json``) or absolute.

    Raises:
        UserInputError: a file that does not exist, naming it and the ``--bundle_root`` fix.
    """
    root = Path(bundle_root).resolve()
    files = [Path(name) if Path(name).is_absolute() else root / name for name in names]
    for path in files:
        if not path.is_file():
            raise UserInputError(f"{path} not found; paths are relative to --bundle_root, the folder holding configs/.")
    return [str(path) for path in files]


def parse_config_list(config_file: str | Sequence[str]) -> list[str]:
    """The config files of a command-line ``--config_file``: one file, a list, a list's text
    ``"['configs/inference.json','configs/live.json']"``, or comma-separated names
    ``configs/inference.json,configs/live.json``, as ``monai.bundle`` takes them.

    Raises:
        UserInputError: the value is neither a file name nor a list of them.
    """
    files = _literal_or_text(config_file) if isinstance(config_file, str) else config_file
    if isinstance(files, str):
        comma_separated = "," in files and not Path(files).is_file()
        files = [name.strip() for name in files.split(",") if name.strip()] if comma_separated else [files]
    if not isinstance(files, (list, tuple)) or not files or not all(isinstance(name, str) for name in files):
        raise UserInputError(
            f"--config_file must name config files, got {config_file!r}; e.g. "
            "--config_file \"['configs/inference.json','configs/live.json']\"."
        )
    return list(files)


def parse_overrides(text: str) -> dict[str, Any]:
    """Id-value overrides from ``monai.bundle``'s command-line form, ``"--ckpt_dir models/munet --batch_size 4"``;
    a value that reads as a Python literal (``4``, ``[224, 288]``) is that value, any other stays text.

    Raises:
        UserInputError: the words do not pair up as ``--key value``, or ``text`` is not a string (fire's flag).
    """
    if not isinstance(text, str):  # fire reads `--overrides "--key value"` (no "=") as a flag, True
        raise UserInputError(
            f"--overrides must be one string of --key value pairs, got {text!r}; write it with '=': "
            '--overrides="--inference_backend torch".'
        )
    words = shlex.split(text)
    if len(words) % 2 or not all(key.startswith("--") for key in words[::2]):
        raise UserInputError(f"overrides must be pairs of --key value, got {words}.")
    return {key[2:]: _literal_or_text(value) for key, value in zip(words[::2], words[1::2], strict=True)}


def _literal_or_text(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_config(files: Sequence[str | os.PathLike], overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """The config stack with its overrides, to read values or build one part from (nothing runs)."""
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update(dict(overrides or {}))
    return parser


def build_network(
    files: Sequence[str | os.PathLike], overrides: Mapping[str, Any] | None = None, seed: int = 0
) -> nn.Module:
    """The stack's ``network_def`` in eval mode, with the random weights of ``seed`` (for timing and export)."""
    parser = read_config(files, overrides)
    torch.manual_seed(seed)
    return parser.get_parsed_content("network_def").eval()


@contextmanager
def _expected_warnings_quiet() -> Iterator[None]:
    """Hold back the warnings ``ConfigWorkflow`` gives at construction for every run here: override files outside
    configs/ (configs/networks/, a tuned override) and its console logging switched off on purpose."""
    workflows = logging.getLogger("monai.bundle.workflows")
    level = workflows.level
    workflows.setLevel(logging.ERROR)
    try:
        yield
    finally:
        workflows.setLevel(level)


def run_workflow(
    files: Sequence[str | os.PathLike],
    run_id: str,
    overrides: Mapping[str, Any] | None = None,
    before_run: Callable[[ConfigWorkflow], None] | None = None,
    console: bool = False,
) -> ConfigWorkflow:
    """Initialize, run and finalize the config stack's ``run_id`` section in this process.

    Args:
        files: the config stack, e.g. train.json then override files.
        run_id: ``training``, ``evaluating``, ``tuning`` or ``inference``.
        overrides: config ids and values, as on the ``monai.bundle`` command line.
        before_run: called with the initialized workflow before it runs, to attach timers or read parts.
        console: log to the console as ``monai.bundle run`` does (configs/logging.conf, a command's run); by
            default only into the run's log files (the benchmarks and tests, which print their own lines).

    Returns:
        the finished workflow; ``workflow.parser.get_parsed_content(id)`` gives the objects it ran with (the
        trained network, the evaluator).

    Raises:
        RuntimeError: the run failed; the message names the configs and overrides, the cause is chained.
    """
    if run_id not in WORKFLOW_TYPES:
        raise ValueError(f"run_id {run_id!r} is not one of {', '.join(WORKFLOW_TYPES)}.")
    with nullcontext() if console else _expected_warnings_quiet():
        workflow = ConfigWorkflow(
            config_file=[str(f) for f in files],
            workflow_type=WORKFLOW_TYPES[run_id],
            run_id=run_id,
            **({} if console else {"logging_file": False}),
            **dict(overrides or {}),
        )
    try:
        workflow.initialize()
        if before_run is not None:
            before_run(workflow)
        workflow.run()
        workflow.finalize()
    except Exception as error:
        _close_run_log(workflow)
        names = ", ".join(Path(f).name for f in files)
        raise RuntimeError(f"{run_id} of [{names}] with {dict(overrides or {})} failed: {error}") from error
    return workflow


def _close_run_log(workflow: ConfigWorkflow) -> None:
    """Close the run's log file (``run_log``), which ``finalize`` closes when the run ends well, so that the next run
    in this process does not write into it."""
    if "run_log" in workflow.parser:
        with suppress(Exception):  # a run_log that cannot even be built has opened nothing
            workflow.parser.get_parsed_content("run_log").close()


def _run_overrides(bundle_root: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`train`, :func:`evaluate` and :func:`tune` load data in this process (``num_workers`` 0) unless told
    otherwise: their runs follow one another in one process, where workers would start again for each."""
    return {"bundle_root": str(bundle_root), "num_workers": 0, **overrides}


def train(
    bundle_root: str | os.PathLike,
    configs: Sequence[str | os.PathLike],
    run: str | os.PathLike,
    before_run: Callable[[ConfigWorkflow], None] | None = None,
    **overrides: Any,
) -> ConfigWorkflow:
    """Train ``configs`` (train.json first) with ``overrides``; models in ``run/models``, logs in ``run/outputs``.

    ``before_run`` is :func:`run_workflow`'s.

    Returns:
        the finished workflow (``workflow.parser.get_parsed_content("network")`` is the trained network).
    """
    root, run = Path(bundle_root).resolve(), Path(run).resolve()
    files = config_files(root, *configs)
    settings = {"ckpt_dir": str(run / "models"), "output_dir": str(run / "outputs"), **overrides}
    return run_workflow(files, "training", _run_overrides(root, settings), before_run)


def evaluate(
    bundle_root: str | os.PathLike, configs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, **overrides
) -> dict[str, Any]:
    """Evaluate ``configs`` (train.json, evaluate.json, ...) into ``output_dir``; return the run's ``summary.json``
    (in ``eval/``, or ``eval_{split}/`` for another ``eval_split``)."""
    root, output = Path(bundle_root).resolve(), Path(output_dir).resolve()
    overrides = _run_overrides(root, {"output_dir": str(output), **overrides})
    workflow = run_workflow(config_files(root, *configs), "evaluating", overrides)
    return json.loads((Path(workflow.parser.get_parsed_content("eval_dir")) / "summary.json").read_text())


def tune(
    bundle_root: str | os.PathLike, configs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, **overrides
) -> tuple[Path, dict[str, Any]]:
    """Choose post-processing for ``configs`` (train.json, evaluate.json, an inferer override) on the validation
    split with configs/tune.json's ``tuning`` run.

    Returns:
        the override file it wrote (stack it on an evaluation) and its settings.
    """
    root, output = Path(bundle_root).resolve(), Path(output_dir).resolve()
    files = config_files(root, *configs, TUNE_CONFIG)
    if TUNED_OVERRIDE_ID not in read_config(files):
        raise UserInputError(f"{root / TUNE_CONFIG} names no {TUNED_OVERRIDE_ID!r}, the override file its run writes.")
    workflow = run_workflow(files, "tuning", _run_overrides(root, {"output_dir": str(output), **overrides}))
    path = Path(workflow.parser.get_parsed_content(TUNED_OVERRIDE_ID))
    return path, json.loads(path.read_text())
