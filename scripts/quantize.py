"""``nerveseg quantize``: the checkpoint's OpenVINO model in int8, kept only where its Dice holds."""

from __future__ import annotations

from nerveseg.bundle import runs
from nerveseg.bundle.inference.quantization import DICE_TOLERANCE, quantize_checkpoint

__all__ = ["quantize"]


def quantize(
    datalist_file: str,
    checkpoint: str | None = None,
    config_file: str = "['configs/inference.json']",
    split: str = "validation",
    tolerance: float = DICE_TOLERANCE,
    overrides: str = "",
) -> None:
    """Quantize the checkpoint's OpenVINO model to int8 with NNCF, calibrated and checked on a labelled split.

    The int8 model is kept beside the float32 one (``models/openvino/``) and run by ``--inference_precision int8``
    only where its mean Dice on the split is at most ``tolerance`` below float32's; otherwise the reason is kept and
    ``int8`` runs float32. Prints both Dice scores and the network's speed-up. Needs NNCF: pip install -e '.[int8]'.

    Args:
        datalist_file: the checkpoint's datalist (``nerveseg prepare``'s); ``split`` calibrates and scores.
        checkpoint: the weights; by default ``models/model.pt``.
        config_file: the config stack, inference.json first, then override files (e.g. configs/live.json).
        split: the labelled split to calibrate and score on (validation; never the test split).
        tolerance: the largest loss of mean Dice against float32 that is accepted.
        overrides: more config values, as one string: ``--overrides="--threshold 0.4"``.
    """
    configs = runs.parse_config_list(config_file)
    settings = runs.parse_overrides(overrides)
    record = quantize_checkpoint(datalist_file, ".", checkpoint, configs, split, tolerance, settings)
    use = "run it with --inference_precision int8" if record["accepted"] else "inference_precision int8 runs float32"
    print(
        f"int8 {'accepted' if record['accepted'] else 'refused'}: {record['reason']} Network "
        f"{record['network_ms_float32']:.1f} -> {record['network_ms_int8']:.1f} ms per image "
        f"({record['speedup']:.2f}x, {record['threads']} threads). Kept in {record['entry']}; {use}."
    )
