"""``nerveseg bench inference``: one checkpoint's mean Dice with a single view, mean flip TTA and ASME, each with
the default and with tuned post-processing; and whether ASME's consistency predicts Dice."""

from __future__ import annotations

import json
from pathlib import Path

from nerveseg.bundle import runs
from nerveseg.bundle.data.datalist import load_datalist_file
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import write_results
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import write_json_atomically

__all__ = ["INFERERS", "inference_comparison"]

INFERERS = {"single view": [], "flip TTA (mean)": ["configs/flip_tta.json"], "ASME": ["configs/asme.json"]}
"""Inferer name to the override files stacked on train.json + evaluate.json."""

EVALUATION = ["configs/train.json", "configs/evaluate.json"]


def inference_comparison(
    datalist_file: str,
    ckpt_dir: str,
    bundle_root: str = ".",
    image_size: tuple[int, int] = (128, 128),
    out: str = "outputs/bench",
) -> list[dict]:
    """Mean Dice of one checkpoint with a single view, mean flip TTA and ASME, each with default and tuned
    post-processing; and whether ASME's consistency predicts Dice.

    The validation split is dealt in two halves: post-processing is tuned on the first (configs/tune.json's
    ``tuning`` run, as ``nerveseg tune``) and every figure is measured on the second, with the override file the
    tuning wrote stacked on the evaluation, so tuning does not flatter it. The consistency analysis (Spearman
    correlation, scatter plot) uses the whole validation split.

    Args:
        datalist_file: the prepared datalist the checkpoint was trained with.
        ckpt_dir: the folder holding its ``model.pt``.
        bundle_root: the bundle folder holding ``configs/``.
        image_size: the size the checkpoint was trained at.
        out: folder of ``inference.json``, ``inference.md`` and the runs behind them (``inference/``: the split
            datalists, tunings and evaluations).
    """
    if not (Path(ckpt_dir) / "model.pt").is_file():
        raise UserInputError(
            f"{Path(ckpt_dir) / 'model.pt'} not found; pass --ckpt_dir, the folder of a trained model."
        )
    folder = Path(out).resolve()
    run_folder = folder / "inference"
    datalist = load_datalist_file(datalist_file)
    if len(datalist.get("validation", [])) < 2:
        raise UserInputError(
            f"{datalist_file} needs 2 or more validation images: one half to tune on, one to report on."
        )
    halves = {"tune": datalist["validation"][0::2], "report": datalist["validation"][1::2]}
    files = {
        name: write_json_atomically(
            run_folder / f"datalist_{name}.json", {"training": datalist["training"], "validation": items}
        )
        for name, items in {**halves, "all": datalist["validation"]}.items()
    }
    common = {"ckpt_dir": str(Path(ckpt_dir).resolve()), "image_size": list(image_size)}

    def evaluate(configs: list[str], split: str, name: str) -> dict:
        return runs.evaluate(bundle_root, configs, run_folder / name, datalist_file=str(files[split]), **common)

    rows = []
    for inferer, extra in INFERERS.items():
        slug = inferer.split(" ")[0].lower()
        override, settings = runs.tune(
            bundle_root,
            [*EVALUATION, *extra],
            run_folder / f"{slug}_tuning",
            datalist_file=str(files["tune"]),
            **common,
        )
        default = evaluate([*EVALUATION, *extra], "report", f"{slug}_default")
        after = evaluate([*EVALUATION, *extra, str(override)], "report", f"{slug}_tuned")
        rows.append({"inferer": inferer, "default": default["mean_dice"], "tuned": after["mean_dice"], **settings})
        print(json.dumps(rows[-1]), flush=True)
    consistency = evaluate([*EVALUATION, *INFERERS["ASME"]], "all", "asme_all")

    rho = consistency.get("consistency_dice_spearman", {})
    lines = [
        f"{Path(datalist_file)}, checkpoint {Path(ckpt_dir)}/model.pt at {list(image_size)}; tuned on "
        f"{len(halves['tune'])} validation images, measured on the other {len(halves['report'])}; "
        f"{describe_machine()['summary']}.",
        "",
        "| inferer | mean Dice, default post-processing | mean Dice, tuned | tuned threshold, min_area |",
        "|---|---:|---:|---|",
        *(
            f"| {r['inferer']} | {r['default']:.4f} | {r['tuned']:.4f} | {r['threshold']}, {r['min_area']} |"
            for r in rows
        ),
        "",
        f"ASME consistency vs Dice over all {consistency['images']} validation images: Spearman rho "
        f"{rho.get('rho', float('nan')):.3f} (p = {rho.get('p', float('nan')):.3g}); "
        f"plot: {run_folder / 'asme_all' / 'eval' / 'consistency_vs_dice.png'}",
    ]
    write_results(folder, "inference", rows, "\n".join(lines) + "\n")
    return rows
