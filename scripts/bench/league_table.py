"""The league's verdicts and tables, from the rows of its runs (each with every test image's Dice)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nerveseg.scripts.bench.league_peers import PEERS
from nerveseg.scripts.bench.results import sample_sd
from nerveseg.scripts.bench.scoring import MARGIN, paired_bootstrap, verdict

__all__ = ["DEFAULT", "NNUNET", "SYSTEMS", "VIEWS", "league_markdown", "league_summary"]

DEFAULT = "default"
NNUNET = "nnU-Net v2 2d"
SYSTEMS = (DEFAULT, *PEERS, NNUNET)
"""Every system, in the table's order."""

VIEWS = (1, 4)
"""Each system is scored from one view and from four flipped views of the same weights."""


def league_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per data set, system and number of views (``"1"``, ``"4"``): the test Dice's mean, sd over seeds (``None``
    for one run), runs and mean training seconds, and for every system but the default the default's paired
    difference to it at as many views (``mean``, 95% ``low`` and ``high``, over the seeds both ran) and its
    ``verdict``."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for system in SYSTEMS:
            for views in VIEWS:
                runs = {
                    r["seed"]: r for r in rows if (r["dataset"], r["system"], r["views"]) == (dataset, system, views)
                }
                if not runs:
                    continue
                dice = [r["test_dice"] for r in runs.values()]
                seconds = [r["train_seconds"] for r in runs.values() if r.get("train_seconds") is not None]
                entry = {
                    "mean": statistics.mean(dice),
                    "sd": sample_sd(dice),
                    "n": len(dice),
                    "train_seconds": statistics.mean(seconds) if seconds else None,
                }
                if system != DEFAULT:
                    entry["difference"] = _difference(rows, dataset, views, runs)
                summary.setdefault(dataset, {}).setdefault(system, {})[str(views)] = entry
    return summary


def _difference(
    rows: Sequence[Mapping[str, Any]], dataset: str, views: int, runs: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any] | None:
    default = {r["seed"]: r for r in rows if (r["dataset"], r["system"], r["views"]) == (dataset, DEFAULT, views)}
    seeds = sorted(set(default) & set(runs))
    if not seeds:
        return None
    pairs = [(default[s]["image_dice"], runs[s]["image_dice"]) for s in seeds]
    if any(len(a) != len(b) for a, b in pairs):
        raise ValueError(f"{dataset}: runs scored different numbers of test images; run the league again.")
    differences = np.array([np.subtract(a, b) for a, b in pairs])
    mean, low, high = paired_bootstrap(differences)
    return {"mean": mean, "low": low, "high": high, "seeds": seeds, "verdict": verdict(mean, low, high)}


def league_markdown(result: Mapping[str, Any]) -> str:
    """Per data set: each system's test Dice from one and four views, the default's paired difference and verdict,
    training seconds; ASME consistency as a quality flag; the time of each piece."""
    machines = sorted({r["machine"] for r in result["rows"]}) or [result["machine"]["summary"]]
    lines = [
        f"League{' (QUICK smoke run: not a result)' if result['quick'] else ''}, run on {'; '.join(machines)}.",
        "",
        "Protocol: each data set split once by `nerveseg prepare` (test: a fifth of the images, seed 0; the rest, "
        "training + validation, is the pool; by image, as neither data set names subjects). Every system trains "
        "on the pool from random weights with the same seeds and input size, sees as many images (epochs x pool; "
        "nnU-Net in batches of its own plan's size) and keeps its last epoch; each is scored on the test split at "
        "the original size by the challenge Dice (empty on empty = 1) from one view and from four flipped views of "
        "the same weights (the default: ASME as shipped, on its default inference path, whose early stop computes "
        "fewer views where the first two agree; the peers: the mean of the flips' probabilities; nnU-Net: its "
        "mirroring, a mean of logits).",
        f"Dice: mean ± sd over seeds (n runs). Δ: the default's Dice minus the system's at as many views, mean over "
        f"seeds and test images, with a 95% interval from a paired bootstrap over seeds, then test images (10,000 "
        f"resamples; with fewer than 3 seeds, named in the cell, the seeds' spread is barely counted); win/loss: "
        f"|Δ| >= {MARGIN} with the interval beyond 0, else tie. Training seconds: the default's include data "
        "caching, one validation and checkpoints; the peers' only their steps; nnU-Net's its trainer's, planning "
        "and preprocessing apart.",
    ]
    for dataset, systems in result["summary"].items():
        s = result["settings"][dataset]
        lines += [
            "",
            f"**{dataset}** ({s['pool']} pool, {s['test']} test images; {s['image_size'][0]}x{s['image_size'][1]}, "
            f"{s['num_epochs']} epochs, batch {s['batch_size']})",
            "",
            "| system | one view | four views | n | train s | Δ one view [95% CI] | verdict | Δ four views [95% CI] "
            "| verdict |",
            "|---|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        for system in (name for name in SYSTEMS if name in systems):
            entries = systems[system]
            cells = [_dice(entries.get(str(v))) for v in VIEWS]
            n = max(e["n"] for e in entries.values())
            comparisons = [_comparison(entries.get(str(v))) for v in VIEWS]
            name = "default (four views: ASME)" if system == DEFAULT else system
            lines.append(
                f"| {name} | {cells[0]} | {cells[1]} | {n} | {_seconds(result['rows'], dataset, system)} | "
                f"{comparisons[0]} | {comparisons[1]} |"
            )
        lines += _consistency_lines(result["rows"], dataset)
    lines += _piece_lines(result["rows"])
    return "\n".join(lines) + "\n"


def _dice(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['mean']:.4f} ± {'n/a' if entry['sd'] is None else format(entry['sd'], '.4f')}"


def _comparison(entry: Mapping[str, Any] | None) -> str:
    difference = (entry or {}).get("difference")
    if difference is None:
        return " | "
    seeds = len(difference["seeds"])
    interval = f"{difference['mean']:+.4f} [{difference['low']:+.4f}, {difference['high']:+.4f}]"
    return f"{interval}{'' if seeds >= 3 else f', {seeds} seed' + 's' * (seeds > 1)} | {difference['verdict']}"


def _seconds(rows: Sequence[Mapping[str, Any]], dataset: str, system: str) -> str:
    runs = [r for r in rows if (r["dataset"], r["system"], r["views"]) == (dataset, system, 1)]
    train = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
    text = f"{statistics.mean(train):.0f}" if train else "-"
    planning = [r["plan_and_preprocess_seconds"] for r in runs if "plan_and_preprocess_seconds" in r]
    return f"{text} (+{statistics.mean(planning):.0f} planning)" if planning else text


def _consistency_lines(rows: Sequence[Mapping[str, Any]], dataset: str) -> list[str]:
    asme = [r for r in rows if (r["dataset"], r["system"], r["views"]) == (dataset, DEFAULT, 4)]
    spearman = [r["consistency_spearman"] for r in asme if r.get("consistency_spearman") is not None]
    auroc = [
        r["consistency_auroc_dice_below_0_3"] for r in asme if r.get("consistency_auroc_dice_below_0_3") is not None
    ]
    if not asme:
        return []
    return [
        "",
        f"ASME consistency as a quality flag: Spearman with Dice {_mean(spearman)}, AUROC for Dice < 0.3 "
        f"{_mean(auroc)} (mean over seeds; - where the test images give none).",
    ]


def _mean(values: Sequence[float]) -> str:
    return f"{statistics.mean(values):.3f}" if values else "-"


def _piece_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Wall-clock minutes of each piece (a data set and a seed, every system: training, prediction, scoring)."""
    pieces: dict[tuple[str, int], float] = {}
    for row in rows:
        if row["views"] == VIEWS[0]:  # both rows of a run carry the run's seconds
            key = (row["dataset"], row["seed"])
            pieces[key] = pieces.get(key, 0.0) + row["run_seconds"]
    if not pieces:
        return []
    times = ", ".join(f"{dataset} seed {seed} {seconds / 60:.1f}" for (dataset, seed), seconds in pieces.items())
    return [
        "",
        f"Minutes per piece (every system of a data set and seed): {times}; in all {sum(pieces.values()) / 60:.0f}.",
    ]
