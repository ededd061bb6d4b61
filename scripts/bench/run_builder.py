"""The benchmarks' one way to a bundle run: config files plus overrides, run in this process by ``ConfigWorkflow``.

A benchmark run is what ``python -m monai.bundle run ID --config_file "[...]" --key value`` would do, and is
built the same way: a stack of the bundle's config files and id-value overrides, never a parsed config edited in
code. Runs are sequential, so they run in this process (no interpreter and import start-up per run); each one
sets its own seed in its config's ``initialize``, and its log lands in its own file (``train.log``,
``eval/evaluate.log``), not on the console, as the bench prints its own summary lines.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from torch import nn

__all__ = [
    "DEFAULT_NETWORK",
    "FLEXIBLE_UNET_BACKBONES",
    "FLEXIBLE_UNET_CONFIG",
    "TUNE_CONFIG",
    "TUNED_OVERRIDE_ID",
    "build_network",
    "config_files",
    "evaluate",
    "network_variants",
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

FLEXIBLE_UNET_BACKBONES = tuple(f"efficientnet-b{i}" for i in range(8))

FLEXIBLE_UNET_CONFIG = "configs/networks/flexible_unet.json"
"""The override that trains MONAI's FlexibleUNet (EfficientNet-b1 unless ``network_def#backbone`` says otherwise)."""

DEFAULT_NETWORK = "BasicUNet (default)"
"""The name :func:`network_variants` gives train.json's own network."""


def config_files(bundle_root: str | os.PathLike, *names: str | os.PathLike) -> list[str]:
    """Absolute paths of config files given relative to ``bundle_root`` (``configs/train.json``) or absolute.

    Raises:
        SystemExit: a file that does not exist, naming it and the ``--bundle_root`` fix.
    """
    root = Path(bundle_root).resolve()
    files = [Path(name) if Path(name).is_absolute() else root / name for name in names]
    for path in files:
        if not path.is_file():
            raise SystemExit(f"{path} not found; paths are relative to --bundle_root, the folder holding configs/.")
    return [str(path) for path in files]


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


def network_variants(
    bundle_root: str | os.PathLike, backbones: Sequence[str] = FLEXIBLE_UNET_BACKBONES
) -> list[tuple[str, list[str], dict]]:
    """(name, config files, overrides) of every selectable network: train.json's default, configs/networks/
    flexible_unet.json at each of ``backbones``, each other file of configs/networks/, then the presence
    classifier."""
    root = Path(bundle_root).resolve()
    train = config_files(root, "configs/train.json")
    flexible = [*train, str(root / FLEXIBLE_UNET_CONFIG)]
    variants = [(DEFAULT_NETWORK, train, {})]
    variants += [
        (f"FlexibleUNet {b}", flexible, {} if b == "efficientnet-b1" else {"network_def#backbone": b})
        for b in backbones
    ]
    for path in sorted((root / "configs" / "networks").glob("*.json")):
        if path != root / FLEXIBLE_UNET_CONFIG:
            variants.append((f"networks/{path.name}", [*train, str(path)], {}))
    variants.append(("presence_classifier.json", [*train, *config_files(root, "configs/presence_classifier.json")], {}))
    return variants


@contextmanager
def _own_log_handlers() -> Iterator[None]:
    """Restore the root logger's handlers and level on exit, closing the file handlers a run's config added.

    A config's ``initialize`` adds a file handler for its run's log (``nerveseg.bundle.logs.log_to_file``); in one
    process the next run must not write into it.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


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
) -> ConfigWorkflow:
    """Initialize, run and finalize the config stack's ``run_id`` section in this process.

    Args:
        files: the config stack, e.g. train.json then override files.
        run_id: ``training``, ``evaluating``, ``tuning`` or ``inference``.
        overrides: config ids and values, as on the ``monai.bundle`` command line.
        before_run: called with the initialized workflow before it runs, to attach timers or read parts.

    Returns:
        the finished workflow; ``workflow.parser.get_parsed_content(id)`` gives the objects it ran with (the
        trained network, the evaluator).

    Raises:
        RuntimeError: the run failed; the message names the configs and overrides, the cause is chained.
    """
    if run_id not in WORKFLOW_TYPES:
        raise ValueError(f"run_id {run_id!r} is not one of {', '.join(WORKFLOW_TYPES)}.")
    with _own_log_handlers():
        with _expected_warnings_quiet():
            workflow = ConfigWorkflow(
                config_file=[str(f) for f in files],
                workflow_type=WORKFLOW_TYPES[run_id],
                run_id=run_id,
                logging_file=False,
                **dict(overrides or {}),
            )
        try:
            workflow.initialize()
            if before_run is not None:
                before_run(workflow)
            workflow.run()
            workflow.finalize()
        except Exception as error:
            names = ", ".join(Path(f).name for f in files)
            raise RuntimeError(f"{run_id} of [{names}] with {dict(overrides or {})} failed: {error}") from error
    return workflow


def _run_overrides(bundle_root: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Benchmark runs load data in this process (``num_workers`` 0) unless told otherwise."""
    return {"bundle_root": str(bundle_root), "num_workers": 0, **overrides}


def train(
    bundle_root: str | os.PathLike, configs: Sequence[str | os.PathLike], run: str | os.PathLike, **overrides: Any
) -> ConfigWorkflow:
    """Train ``configs`` (train.json first) with ``overrides``; models in ``run/models``, logs in ``run/outputs``.

    Returns:
        the finished workflow (``workflow.parser.get_parsed_content("network")`` is the trained network).
    """
    root, run = Path(bundle_root).resolve(), Path(run).resolve()
    files = config_files(root, *configs)
    settings = {"ckpt_dir": str(run / "models"), "output_dir": str(run / "outputs"), **overrides}
    return run_workflow(files, "training", _run_overrides(root, settings))


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
        raise SystemExit(f"{root / TUNE_CONFIG} names no {TUNED_OVERRIDE_ID!r}, the override file its run writes.")
    workflow = run_workflow(files, "tuning", _run_overrides(root, {"output_dir": str(output), **overrides}))
    path = Path(workflow.parser.get_parsed_content(TUNED_OVERRIDE_ID))
    return path, json.loads(path.read_text())
