"""System 7 of ``nerveseg bench league``: nnU-Net v2 planning, preprocessing, augmenting and training by itself.

nnU-Net reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` from the environment, so
:func:`nnunet_probabilities` writes the data in nnU-Net's raw format and runs the rest in a subprocess
(``python -m nerveseg.scripts.bench.league_nnunet job.json``) with those three set to folders of ``work_dir``.
The subprocess uses nnU-Net's Python API, the same calls as its console commands, offline and on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATASET", "DATASET_ID", "PREDICTIONS", "nnunet_probabilities"]

DATASET_ID = 501
DATASET = f"Dataset{DATASET_ID}_League"
"""The nnU-Net data set written into ``work_dir/nnUNet_raw``."""

PREDICTIONS = {"mirrored": True, "single view": False}
"""Each prediction nnU-Net makes of the test images, by name, to whether it mirrors (its default) or not."""

STEP_FILE = "step.txt"
"""The file in ``work_dir`` naming the step the subprocess is in, so that a timeout can say where it hung."""

CHANNEL = "grayscale"
"""The channel's name; any name other than CT gives nnU-Net's per-image z-score normalisation."""


def nnunet_probabilities(
    train_images: Sequence[np.ndarray],
    train_masks: Sequence[np.ndarray],
    test_images: Sequence[np.ndarray],
    work_dir: str | os.PathLike,
    num_epochs: int,
    images_per_epoch: int,
    seed: int = 0,
    threads: int = 2,
    timeout_s: float = 1800.0,
) -> tuple[dict[str, list[np.ndarray]], float]:
    """Train nnU-Net v2 ``2d`` on all training images and predict the foreground probability of each test image.

    nnU-Net plans with its default ``ExperimentPlanner`` (patch size, network and batch size of its own), preprocesses
    and augments as it does by default, and trains ``nnUNetTrainer`` on fold ``"all"`` on the CPU, shortened only in
    ``num_epochs`` and ``num_iterations_per_epoch`` (as many batches of its plan's size as hold ``images_per_epoch``
    images; its polynomial learning rate spans the shortened run) and to one
    validation batch per epoch; its final validation is skipped, as there is no held-out fold. ``nnUNetPredictor``
    predicts with its defaults, Gaussian-weighted sliding windows and test-time mirroring on both axes, and once more
    without mirroring, a single view, to set beside single-view systems. Torch, numpy
    and ``random`` are seeded with ``seed``, and augmentation runs in the training process (``nnUNet_n_proc_DA=0``),
    but nnU-Net is not promised to be bit-for-bit repeatable.

    Args:
        train_images: ``[H, W]`` float images in [0, 1] (clipped), written as 8-bit PNG.
        train_masks: ``[H, W]`` masks with values in {0, 1} (any dtype), one per training image, of its size.
        test_images: ``[H, W]`` float images in [0, 1]; any size (nnU-Net pads those below its patch size).
        work_dir: a fresh folder for ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``, predictions and logs.
        num_epochs: epochs of nnU-Net's trainer (its default is 1000).
        images_per_epoch: images per epoch, rounded up to whole batches of the plan's batch size (its default is
            250 batches).
        seed: seeds torch, numpy and ``random`` in the subprocess.
        threads: torch and OpenMP threads of the subprocess.
        timeout_s: the subprocess is stopped after this many seconds, and the error names the step it was in.

    Returns:
        For each prediction of :data:`PREDICTIONS`, the ``[H, W]`` float32 foreground probabilities of
        ``test_images``, in their order and at their size; and the seconds of training (not of planning,
        preprocessing or prediction). ``work_dir/result.json`` adds nnU-Net's plan (batch and patch size), the
        seconds of planning and preprocessing, of each epoch and of each prediction; its logs are in ``work_dir``.
    """
    # Imported here, not above: the subprocess and each worker nnU-Net spawns import this module, and machine's
    # imports (MONAI) took 7 of their seconds each.
    from nerveseg.scripts.bench.machine import require_benchmark_extra

    require_benchmark_extra("The nnU-Net run", "nnunetv2")
    if min(num_epochs, images_per_epoch, threads) < 1:
        raise ValueError(
            f"num_epochs ({num_epochs}), images_per_epoch ({images_per_epoch}) and threads ({threads}) "
            "must be at least 1."
        )
    work = Path(work_dir).resolve()
    if work.exists() and any(work.iterdir()):
        raise ValueError(f"work_dir {work} is not empty; pass a fresh folder (nnU-Net would reuse what is there).")
    raw = work / "nnUNet_raw" / DATASET
    test_files = _write_raw(raw, train_images, train_masks, test_images)
    job = {
        "num_epochs": num_epochs,
        "images_per_epoch": images_per_epoch,
        "seed": seed,
        "threads": threads,
        "test_files": [str(path) for path in test_files],
        "predictions": str(work / "predictions"),
    }
    (work / "job.json").write_text(json.dumps(job, indent=2))
    env = {
        **os.environ,
        **{name: str(work / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")},
        **{name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "nnUNet_n_proc_DA": "1",  # the planner's thread count; 0 (augment in the training process) when training
        "nnUNet_def_n_proc": str(threads),  # the predictor's thread cap
        "nnUNet_compile": "false",  # nnU-Net does not compile on the CPU anyway
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
    }
    with open(work / "stdout.log", "w") as stdout, open(work / "stderr.log", "w") as stderr:
        try:
            process = subprocess.run(
                [sys.executable, "-m", "nerveseg.scripts.bench.league_nnunet", str(work / "job.json")],
                env=env,
                stdout=stdout,
                stderr=stderr,
                check=False,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            step = (work / STEP_FILE).read_text() if (work / STEP_FILE).is_file() else "starting"
            raise RuntimeError(
                f"nnU-Net's subprocess ran past {timeout_s:.0f} s while {step} and was stopped; its logs and "
                f"folders are in {work}. On a slower or busy machine pass a larger timeout_s."
            ) from None
    if process.returncode != 0:
        tail = "\n".join((work / "stderr.log").read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(
            f"nnU-Net failed (exit code {process.returncode}); its logs and folders are in {work}. "
            f"Last lines of its stderr:\n{tail}"
        )
    result = json.loads((work / "result.json").read_text())
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in PREDICTIONS}
    for name, maps in probabilities.items():
        for path, image in zip(test_files, test_images, strict=True):
            case = path.name.removesuffix("_0000.png")
            with np.load(work / "predictions" / _folder(name) / f"{case}.npz") as saved:
                foreground = np.asarray(saved["probabilities"][1], dtype=np.float32)  # [1, H, W]: nnU-Net's 2D as 3D
            foreground = foreground[0] if foreground.ndim == 3 else foreground
            if foreground.shape != np.shape(image):
                raise RuntimeError(
                    f"nnU-Net predicted {foreground.shape} for an image of {np.shape(image)}; see {work}."
                )
            maps.append(np.clip(foreground, 0.0, 1.0))
    return probabilities, float(result["train_seconds"])


def _folder(prediction: str) -> str:
    return prediction.replace(" ", "_")


def _write_raw(
    raw: Path, train_images: Sequence[np.ndarray], train_masks: Sequence[np.ndarray], test_images: Sequence[np.ndarray]
) -> list[Path]:
    """Write ``imagesTr``, ``labelsTr``, ``imagesTs`` (8-bit PNG) and ``dataset.json``; return the test files."""
    from PIL import Image

    if len(train_images) != len(train_masks) or not len(train_images) or not len(test_images):
        raise ValueError(
            f"Got {len(train_images)} training images, {len(train_masks)} masks and {len(test_images)} test images; "
            "pass one mask per training image and at least one of each."
        )
    for kind in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / kind).mkdir(parents=True)
    for index, (image, mask) in enumerate(zip(train_images, train_masks, strict=True)):
        mask = np.asarray(mask)
        if mask.shape != np.shape(image) or mask.ndim != 2 or not np.isin(mask, (0, 1)).all():
            raise ValueError(
                f"Training mask {index} has shape {mask.shape} and values {np.unique(mask)[:5]}; pass [H, W] masks of "
                f"0 and 1 the size of their image {np.shape(image)}."
            )
        Image.fromarray(_to_uint8(image, f"training image {index}")).save(
            raw / "imagesTr" / f"case_{index:04d}_0000.png"
        )
        Image.fromarray(mask.astype(np.uint8)).save(raw / "labelsTr" / f"case_{index:04d}.png")
    test_files = [raw / "imagesTs" / f"test_{index:04d}_0000.png" for index in range(len(test_images))]
    for index, (image, path) in enumerate(zip(test_images, test_files, strict=True)):
        Image.fromarray(_to_uint8(image, f"test image {index}")).save(path)
    dataset = {
        "channel_names": {"0": CHANNEL},
        "labels": {"background": 0, "nerve": 1},
        "numTraining": len(train_images),
        "file_ending": ".png",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return test_files


def _to_uint8(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or not np.isfinite(image).all():
        raise ValueError(
            f"The {name} has shape {image.shape} or values that are not finite; pass [H, W] finite floats."
        )
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """The subprocess: fingerprint, plan, preprocess, train and predict with nnU-Net's API; write ``result.json``."""
    import random

    import torch

    torch.set_num_threads(job["threads"])
    random.seed(job["seed"])
    np.random.seed(job["seed"])
    torch.manual_seed(job["seed"])
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import get_trainer_from_args

    dataset_id, cpu = DATASET_ID, torch.device("cpu")
    step_file = Path(job["predictions"]).parent / STEP_FILE
    step_file.write_text("fingerprinting, planning and preprocessing")
    start = time.perf_counter()
    # nnUNetv2_plan_and_preprocess -d 501 -c 2d -np 1 with the default planner; each step spawns a pool (seconds)
    extract_fingerprints([dataset_id], num_processes=1, show_progress_bar=False)
    plans = plan_experiments([dataset_id], "ExperimentPlanner")
    preprocess([dataset_id], plans, configurations=("2d",), num_processes=(1,), show_progress_bar=False)
    planned = time.perf_counter()
    # nnUNetv2_train 501 2d all -device cpu, shortened
    os.environ["nnUNet_n_proc_DA"] = "0"  # no data-loader processes to share the cores with training
    trainer = get_trainer_from_args(str(dataset_id), "2d", "all", "nnUNetTrainer", plans, device=cpu)
    trainer.num_epochs = job["num_epochs"]
    batch_size = trainer.configuration_manager.batch_size  # the plan's; the trainer copies it when it starts
    trainer.num_iterations_per_epoch = -(-job["images_per_epoch"] // batch_size)
    trainer.num_val_iterations_per_epoch = 1
    step_file.write_text(f"training ({trainer.num_epochs} epochs of {trainer.num_iterations_per_epoch} batches)")
    trainer.run_training()
    trained = time.perf_counter()
    begins, ends = (trainer.logger.get_value(f"epoch_{edge}_timestamps", step=None) for edge in ("start", "end"))
    # nnUNetv2_predict -d 501 -c 2d -f all -device cpu --save_probabilities (mirroring on, its default; then off)
    predict_seconds = {}
    for name, mirroring in PREDICTIONS.items():
        begin = time.perf_counter()
        step_file.write_text(f"predicting the test images ({name})")
        predictor = nnUNetPredictor(use_mirroring=mirroring, device=cpu, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(trainer.output_folder_base, ("all",), "checkpoint_final.pth")
        folder = Path(job["predictions"]) / _folder(name)
        outputs = [str(folder / Path(f).name.removesuffix("_0000.png")) for f in job["test_files"]]
        folder.mkdir(parents=True, exist_ok=True)
        predictor.predict_from_files_sequential([[f] for f in job["test_files"]], outputs, save_probabilities=True)
        predict_seconds[name] = time.perf_counter() - begin
    result = {
        "train_seconds": trained - planned,
        "plan_and_preprocess_seconds": planned - start,
        "epoch_seconds": [end - begin for begin, end in zip(begins, ends, strict=True)],
        "predict_seconds": predict_seconds,
        "batch_size": trainer.batch_size,
        "iterations_per_epoch": trainer.num_iterations_per_epoch,
        "patch_size": list(trainer.configuration_manager.patch_size),
        "network_stages": len(trainer.configuration_manager.pool_op_kernel_sizes),
    }
    return result


if __name__ == "__main__":
    job_file = Path(sys.argv[1])
    outcome = _run(json.loads(job_file.read_text()))
    (job_file.parent / "result.json").write_text(json.dumps(outcome, indent=2))
    print(json.dumps(outcome), flush=True)
