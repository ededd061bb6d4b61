"""``nerveseg bench quickstart``: the README's Quick start training command, timed from a cold data cache.

The command runs exactly as the README writes it (``python -m monai.bundle run training`` on train.json +
quickstart.json) in a subprocess, with its models and logs in the run's folder and ``NERVESEG_CACHE`` pointing at
an empty folder, so generating the synthetic data is counted. Not counted: installing the bundle (the README's
table gives the whole command). The validation mean Dice of every epoch is read back from the run's TensorBoard
events.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import write_results
from nerveseg.scripts.bench.scoring import validation_dice_of_events

__all__ = [
    "QUICKSTART_CONFIGS",
    "measure_quickstart",
    "quickstart",
    "quickstart_markdown",
]

QUICKSTART_CONFIGS = "['configs/train.json','configs/quickstart.json']"


def measure_quickstart(bundle_root: str | os.PathLike, folder: Path) -> dict[str, Any]:
    """Run the Quick start's training command once; its seconds and per-epoch validation Dice."""
    root, folder = Path(bundle_root).resolve(), Path(folder).resolve()
    shutil.rmtree(folder / "cache", ignore_errors=True)
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", QUICKSTART_CONFIGS,
        "--ckpt_dir", str(folder / "models"), "--output_dir", str(folder / "outputs"),
    ]  # fmt: skip
    environment = {**os.environ, "NERVESEG_CACHE": str(folder / "cache")}
    start = time.perf_counter()
    finished = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        raise RuntimeError(
            f"The Quick start's training failed ({folder / 'outputs' / 'train.log'}):\n{finished.stderr}"
        )
    dice = validation_dice_of_events(folder / "outputs")
    if not dice:
        raise RuntimeError(f"The Quick start's run logged no validation Dice in {folder / 'outputs'}.")
    best = max(range(len(dice)), key=dice.__getitem__)
    result = {
        "seconds": seconds,
        "validation_dice": dice,
        "best_dice": dice[best],
        "best_epoch": best + 1,
        "last_dice": dice[-1],
    }
    print(json.dumps(result), flush=True)
    return result


def quickstart(out: str = "outputs/bench", bundle_root: str = ".") -> dict[str, Any]:
    """Time the README's Quick start training from a cold data cache (``quickstart.json``, ``quickstart.md``).

    Args:
        out: folder of the json and md files and the run behind them (``quickstart/``).
        bundle_root: the bundle folder holding ``configs/``.
    """
    folder = Path(out).resolve()
    results = {"machine": describe_machine(), "quickstart": measure_quickstart(bundle_root, folder / "quickstart")}
    results["quickstart_seconds"] = results["quickstart"]["seconds"]
    lines = ["# nerveseg bench quickstart", "", f"Measured {results['machine']['summary']}.", ""]
    lines += quickstart_markdown(results["quickstart"])
    write_results(folder, "quickstart", results, "\n".join(lines) + "\n")
    return results


def quickstart_markdown(result: dict[str, Any]) -> list[str]:
    """One sentence: the seconds, the best and last epoch's Dice, and every epoch's."""
    dice = ", ".join(f"{d:.3f}" for d in result["validation_dice"])
    return [
        f"The Quick start's training command (data generation included, install not) took {result['seconds']:.0f} s; "
        f"best validation mean Dice {result['best_dice']:.3f} at epoch {result['best_epoch']}, last "
        f"{result['last_dice']:.3f}. Per epoch: {dice}.",
    ]
