"""``nerveseg label-app``: lay out a MONAI Label app folder for this bundle and give the offline start command.

The layout MONAI Label expects (read from monailabel 0.8.5): ``{app}/main.py`` holding a ``MONAILabelApp``
subclass, and each bundle in ``{app}/model/{name}/`` (``configs/inference.json``, ``configs/train.json``,
``configs/metadata.json``, ``models/model.pt``). Training writes ``models/model.pt`` there, never into this
repository. Studies are a flat folder of images with the annotators' labels in ``labels/final/{id}.{ext}``.
No MONAI Label import here, so the command works (and is tested) without the ``label`` extra.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nerveseg.bundle import runs
from nerveseg.utils.files import atomic_path, write_json_atomically

__all__ = ["OFFLINE_CONF", "create_app", "label_app", "start_command"]

OFFLINE_CONF = {"zoo_source": "ngc", "sam2": "false"}
"""``--conf`` options that keep MONAI Label off the network: a bundle folder present under ``model/`` is used as
is when the zoo source is not ``monaihosting`` (whose model list is fetched at start), and the SAM2 tasks, whose
weights are downloaded at start, are left out."""

BUNDLE_FILES = ("configs", "docs/README.md", "LICENSE")
MASK_SUFFIX = "_mask"
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _merged_config(files: Sequence[Path], overrides: Mapping[str, Any]) -> dict:
    return runs.read_config(files, overrides).get()


def create_app(
    out: str | os.PathLike,
    bundle_root: str | os.PathLike = ".",
    name: str = "nerveseg",
    checkpoint: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    configs: Sequence[str] = (),
    infer_configs: Sequence[str] = (),
    studies: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
) -> Path:
    """Write the app folder ``out`` (``main.py``, ``model/{name}/``) and, with ``studies``, the studies folder.

    Args:
        out: the app folder; its ``model/{name}`` is replaced, other content (``logs/``) is kept.
        bundle_root: this bundle (the folder holding ``configs/``).
        name: the model name in MONAI Label (``/infer/{name}``).
        checkpoint: weights to serve from the start; ``{bundle_root}/models/model.pt`` when it exists. Without
            one, ``/infer/{name}`` appears after the first ``/train/{name}``.
        overrides: top-level values set in the app's inference.json and train.json, e.g.
            ``{"image_size": [224, 288], "num_workers": 0}``.
        configs: override files (relative to ``bundle_root``) merged into both, e.g. a network override.
        infer_configs: override files merged into inference.json only, e.g. ``configs/asme.json``.
        studies: the studies folder to create (with ``labels/final/``), if not there.
        images: a folder whose 2D images are copied into ``studies``; ``{id}_mask.{ext}`` files become labels in
            ``labels/final/{id}.{ext}`` (the challenge layout; 0/1 or 0/255 masks).

    Raises:
        ValueError: the bundle, a config, the checkpoint or the images folder is missing, or ``images`` without
            ``studies``.
    """
    root, app = Path(bundle_root).resolve(), Path(out).resolve()
    if not (root / "configs" / "inference.json").is_file():
        raise ValueError(f"{root / 'configs' / 'inference.json'} not found; pass bundle_root (holding configs/).")
    for extra in (*configs, *infer_configs):
        if not (root / extra).is_file():
            raise ValueError(f"Config {root / extra} not found; give override files relative to bundle_root.")
    weights = Path(checkpoint) if checkpoint is not None else root / "models" / "model.pt"
    if checkpoint is not None and not weights.is_file():
        raise ValueError(f"Checkpoint {weights} not found; train the bundle first or leave --checkpoint out.")
    if images is not None and studies is None:
        raise ValueError("images needs studies: the folder to copy them into.")

    with atomic_path(app / "model" / name) as partial:
        partial.mkdir()
        for item in BUNDLE_FILES:
            source = root / item
            if source.is_dir():
                shutil.copytree(source, partial / item)
            elif source.is_file():
                (partial / item).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, partial / item)
        overrides = dict(overrides or {})
        for config, stack in (("inference.json", [*configs, *infer_configs]), ("train.json", list(configs))):
            merged = _merged_config([root / "configs" / config, *(root / s for s in stack)], overrides)
            write_json_atomically(partial / "configs" / config, merged)
        (partial / "models").mkdir(parents=True, exist_ok=True)
        if weights.is_file():
            shutil.copyfile(weights, partial / "models" / "model.pt")
    shutil.copyfile(Path(__file__).with_name("main.py"), app / "main.py")

    if studies is not None:
        _layout_studies(Path(studies), None if images is None else Path(images))
    return app


def _layout_studies(studies: Path, images: Path | None) -> None:
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    if images is None:
        return
    if not images.is_dir():
        raise ValueError(f"Images folder {images} not found.")
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem.endswith(MASK_SUFFIX):
            target = studies / "labels" / "final" / f"{path.stem[: -len(MASK_SUFFIX)]}{path.suffix}"
        else:
            target = studies / path.name
        shutil.copyfile(path, target)


def start_command(
    app: str | os.PathLike,
    studies: str | os.PathLike,
    name: str = "nerveseg",
    host: str = "127.0.0.1",
    port: int = 8000,
    conf: Mapping[str, str] | None = None,
    python: str | None = None,
) -> list[str]:
    """The ``monailabel start_server`` command for ``app`` with the offline ``--conf`` options.

    Args:
        app: the app folder.
        studies: the studies folder.
        name: the bundle folder name under ``model/``.
        host: the address to listen on (``0.0.0.0`` to serve other machines).
        port: the port.
        conf: more ``--conf`` options (they win over :data:`OFFLINE_CONF`).
        python: the interpreter of the environment holding MONAI Label (``python`` from ``PATH`` by default).
            The command is ``python -m monailabel.main``, not MONAI Label's ``monailabel`` script: that script
            runs whichever ``python`` comes first on ``PATH``, not the one of its own virtual environment.
    """
    command = [python or "python", "-m", "monailabel.main"]
    command += ["start_server", "--app", str(app), "--studies", str(studies), "--conf", "models", name]
    for key, value in {**OFFLINE_CONF, **(conf or {})}.items():
        command += ["--conf", key, str(value)]
    return command + ["--host", host, "--port", str(port)]


def label_app(
    out: str = "outputs/label_app",
    studies: str = "outputs/label_studies",
    images: str | None = None,
    bundle_root: str = ".",
    name: str = "nerveseg",
    checkpoint: str | None = None,
    overrides: dict | None = None,
    configs: tuple[str, ...] = (),
    infer_configs: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    start: bool = False,
) -> None:
    """Lay out a MONAI Label app and studies folder for this bundle and print (or run) the offline start command.

    Args:
        out: the app folder to write (``main.py``, ``model/{name}/``).
        studies: the studies folder (images; labels in ``labels/final/``), created if missing.
        images: a folder of images (and ``{id}_mask`` labels) to copy into ``studies``.
        bundle_root: this bundle.
        name: the model name (``/infer/{name}``, ``/train/{name}``).
        checkpoint: weights to serve from the start (default: the bundle's ``models/model.pt`` if trained).
        overrides: top-level config values for the app's inference.json and train.json, e.g.
            ``--overrides '{"num_workers": 0}'``.
        configs: override files merged into both configs, e.g. ``"['configs/networks/flexible_unet.json']"``.
        infer_configs: override files merged into inference.json only, e.g. ``"['configs/asme.json']"``.
        host: address to listen on; ``0.0.0.0`` serves other machines (Slicer, OHIF on workstations).
        port: port to listen on.
        start: start the server now (replaces this process) instead of printing the command.
    """
    try:
        app = create_app(out, bundle_root, name, checkpoint, overrides, configs, infer_configs, studies, images)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    installed = importlib.util.find_spec("monailabel") is not None
    python = sys.executable if installed else None
    command = start_command(app, Path(studies).resolve(), name, host, port, python=python)
    print(f"MONAI Label app written to {app} (bundle in {app / 'model' / name}); studies in {Path(studies).resolve()}")
    if not (app / "model" / name / "models" / "model.pt").is_file():
        print(f"No checkpoint yet: /infer/{name} appears after the first /train/{name}.")
    if not installed:
        print("MONAI Label is not installed in this environment: pip install -e '.[label]' first.")
    if start:
        if not installed:
            raise SystemExit("Cannot start: MONAI Label is not installed here; pip install -e '.[label]'.")
        os.execv(sys.executable, command)
    print("Start the server (no network needed) with:")
    print("  " + shlex.join(command))
