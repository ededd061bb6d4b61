"""``nerveseg bench [PART]``: the benchmarks, one module per part; no part runs the full suite.

Every part that builds, trains or evaluates the bundle does it through :mod:`nerveseg.bundle.runs` (config files plus
overrides, run in this process); each writes ``{name}.json`` and ``{name}.md`` through :mod:`.results`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["PARTS", "bench", "part_function"]

PARTS = {
    "networks": "network_table:network_table",
    "latency": "suite:latency",
    "asme": "suite:asme",
    "peer": "suite:peer",
    "training": "suite:training",
    "quality": "suite:quality",
    "quickstart": "quickstart:quickstart",
    "league": "league:league",
    "ablations": "league_ablations:ablations",
    "recipe": "recipe_variants:recipe",
    "inference": "inference_comparison:inference_comparison",
    "active-learning": "active_learning_simulation:simulate",
    "live": "live_latency:live_latency",
    "asme-curve": "asme_curve:asme_curve",
    "live-recipe": "live_recipe:live_recipe",
    "live-smoothing": "live_smoothing:live_smoothing",
}
"""Part name to ``module:function`` in this package (imported when the part runs, so other commands start fast)."""


def part_function(part: str | None) -> Callable[..., Any]:
    """The function that runs ``part`` (``None``: the full suite)."""
    if part is None:
        module, name = "suite", "run_suite"  # all parts into bench.json
    elif part in PARTS:
        module, name = PARTS[part].split(":")
    else:
        raise SystemExit(f"bench part {part!r} is unknown; choose one of {', '.join(PARTS)} (or none for the suite).")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def bench(part: str | None = None, **options: Any) -> None:
    """Run one benchmark part, or with no part the full suite. Every part prints its table and writes
    ``{name}.json`` and ``{name}.md`` into ``--out`` (default ``outputs/bench``).

    Usage: ``nerveseg bench [PART] [--option value ...]``; ``nerveseg bench PART --help`` describes a part.

    No part, the suite: latency, asme, peer, training, live, quality and quickstart (quality only where ``--data``
    exists; neither quality nor quickstart with ``--quick``) into ``bench.json`` (headline ratios at the top
    level) and ``bench.md``.
    Options: --out, --quick (a smoke run in about a minute; do not quote it), --bundle_root, --data (USGRA-seg,
    default ../shared/data/usgra_seg), --seeds (quality's training seeds), --threads (torch CPU threads), --parts
    (some of the suite's parts only, e.g. "['latency','asme']") and --name (the files' stem, default bench).

    Parts:
        latency: forward time per image of every network config on every execution path (eager, channels-last,
            bfloat16, torch.compile, ONNX Runtime). Options: --out, --quick, --bundle_root, --threads.
        asme: the ASME ensemble's 4 views batched and one by one, and with configs/asme.json's early stop,
            against 1 view. Options: as latency.
        peer: FlexibleUNet-b1 against segmentation_models_pytorch's Unet-b1. Options: as latency.
        training: training images/s with train.json, the share spent waiting for data, and the trainer's step
            against a bare PyTorch loop of the same network, loss and optimizer. Options: as latency.
        quality: the default recipe trained on USGRA-seg, validation Dice of the eager and the default inference
            path. Options: --out, --quick, --bundle_root, --data, --seeds, --threads.
        quickstart: the README's Quick start training command from a cold data cache: seconds, and the
            validation Dice of each epoch. Options: --out, --bundle_root.
        league: the default recipe against smp's Unet-b1, MONAI's FlexibleUNet-b0 and nnU-Net v2, trained alike
            on USGRA-seg and DSB2018 and scored on their test splits from one and four views, with paired
            intervals (needs the benchmark extra). Resumable: league.json gains each run as it ends, and the same
            command skips runs already there. Options: --data_root, --out, --bundle_root, --seeds, --datasets
            (one of each: one piece), --nnunet_timeout_s, --quick (a handful of images, two epochs: a smoke run).
        ablations: one change at a time to the default recipe (learning rate, batch size, loss, optimiser,
            warm-up, EMS, normalisation, width, augmentation, intensity scaling, input size, FlexibleUNet and its
            encoder), trained on the league's
            data and split, scored on its validation split (best and last epoch). Options: --data_root, --out,
            --bundle_root, --seeds, --datasets, --names (some ablations only), --base (overrides under all).
        networks: parameters, GFLOPs and CPU latency of every selectable network.
            Options: --bundle_root, --image_size, --repeats, --out.
        recipe: validation Dice of the default recipe, with EMS and with SWA, per seed. Options: --datalist_file
            (required), --bundle_root, --image_size, --num_epochs, --learning_rate, --seeds, --out, --reuse.
        inference: one checkpoint's Dice with a single view, flip TTA and ASME, default and tuned post-processing
            (tuned on one half of the validation split, measured on the other), and ASME consistency against
            Dice. Options: --datalist_file, --ckpt_dir (both required), --bundle_root, --image_size, --out.
        live: the live path's latency from decoded frame to mask (nerveseg live), one frame at a time, per input
            size and backend (inference.json's torch path, OpenVINO fp32 and bf16). Options: --out, --bundle_root,
            --sizes, --frames, --threads, --quick, --overrides (config values, e.g. a narrower network).
        live-recipe: configs/live.json's recipe against the default one (and the default network at 224x288),
            trained alike on USGRA-seg and scored through the live path at the label's size, validation and test
            Dice with paired intervals. Resumable, a row per run. Options: --data_root, --out, --bundle_root,
            --seeds, --recipes, --num_epochs, --tolerance, --int8 (quantize each run and report int8's Dice change
            and speed-up), --quick.
        live-smoothing: whether averaging probabilities over consecutive frames (nerveseg live --smoothing) raises
            Dice: a checkpoint on its validation subjects' frames in order (the Quick start's by default), paired
            change per frame against no smoothing. Options: --checkpoint, --dataset_dir, --configs, --smoothings,
            --seed, --bundle_root, --out, --overrides.
        asme-curve: ASME's Dice and cost at each early-stop agreement against full ASME and one view, on trained
            checkpoints' validation (or test) images, with paired 95% intervals, and which agreements meet the
            target. Options: --datalist_file, --checkpoints, --image_size (all required), --bundle_root,
            --stop_agreements, --repeats, --max_cost, --dice_tolerance, --split, --out.
        active-learning: simulated annotation rounds on USGRA-seg, ASME-consistency selection against random,
            each round trained with train.json's trainer. Options: --src, --out, --bundle_root, --network,
            --features, --image_size, --initial, --step, --max_labelled, --num_epochs, --batch_size,
            --learning_rate, --seeds, --strategies, --figure, --processes, --threads, --quick.

    Args:
        part: one of the parts above; none runs the suite.
        options: the part's options.
    """
    function = part_function(part)
    if options.pop("help", False):  # fire hands ``--help`` to a function taking **options as an option
        print(inspect.getdoc(bench if part is None else function))
        return
    try:
        inspect.signature(function).bind(**options)
    except TypeError as error:
        accepted = ", ".join(f"--{name}" for name in inspect.signature(function).parameters)
        raise SystemExit(f"bench {part or '(suite)'}: {error}; its options are {accepted}.") from error
    function(**options)  # the part prints and saves its results; fire would print a returned value again
