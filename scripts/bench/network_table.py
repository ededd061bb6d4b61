"""``nerveseg bench networks``: parameters, forward GFLOPs and CPU latency of every selectable network."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nerveseg.bundle.runs import build_network, config_files
from nerveseg.networks.profile import count_parameters, forward_flops, forward_latency
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import write_results

__all__ = ["DEFAULT_NETWORK", "FLEXIBLE_UNET_BACKBONES", "FLEXIBLE_UNET_CONFIG", "network_table", "network_variants"]

FLEXIBLE_UNET_BACKBONES = tuple(f"efficientnet-b{i}" for i in range(8))

FLEXIBLE_UNET_CONFIG = "configs/networks/flexible_unet.json"
"""The override that trains MONAI's FlexibleUNet (EfficientNet-b1 unless ``network_def#backbone`` says otherwise)."""

DEFAULT_NETWORK = "BasicUNet (default)"
"""The name :func:`network_variants` gives train.json's own network."""


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


def network_table(
    bundle_root: str = ".",
    image_size: tuple[int, int] = (448, 576),
    repeats: int = 5,
    out: str = "outputs/bench",
) -> list[dict]:
    """Parameters, forward GFLOPs and CPU forward latency (batch 1, median of ``repeats``) of every selectable network.

    Each network is built from the bundle's real configs (``network_def`` of train.json at each EfficientNet size,
    then each file of configs/networks/ and the presence classifier), with random weights.

    Args:
        bundle_root: the bundle folder holding ``configs/``.
        image_size: input height and width.
        repeats: timed forward passes per network, after one untimed warm-up.
        out: folder for ``networks.json`` (every network) and ``networks.md`` (the table).
    """
    config_files(bundle_root, "configs/train.json")  # a wrong bundle_root stops here, naming the fix
    shape = (1, 1, *image_size)
    machine = describe_machine()["summary"]
    print(f"Input {shape}; {machine}")
    print(f"{'network':<42}{'parameters':>14}{'GFLOPs':>9}{'latency s':>11}")
    rows = []
    for name, files, overrides in network_variants(bundle_root):
        network = build_network(files, overrides)
        row = {
            "network": name,
            "parameters": count_parameters(network),
            "gflops": forward_flops(network, shape) / 1e9,
            "latency": forward_latency(network, shape, repeats=repeats),
        }
        rows.append(row)
        print(f"{name:<42}{row['parameters']:>14,}{row['gflops']:>9.1f}{row['latency']['median']:>11.3f}", flush=True)
        del network
    table = [
        f"Input {list(shape)}, eval mode, batch 1, median of {repeats} runs after a warm-up; {machine}.",
        "",
        "| network | parameters | GFLOPs | CPU latency (s) |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['network']} | {r['parameters'] / 1e6:.1f} M | {r['gflops']:.1f} | {r['latency']['median']:.2f} |"
            for r in rows
        ),
    ]
    write_results(Path(out), "networks", rows, "\n".join(table) + "\n")
    return rows
