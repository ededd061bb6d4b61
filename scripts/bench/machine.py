"""The machine every benchmark figure belongs to: CPU, threads, GPU and library versions."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from typing import Any

import monai
import torch

from nerveseg.networks.profile import cpu_model

__all__ = ["describe_machine"]


def describe_machine() -> dict[str, Any]:
    """The date, CPU, torch threads, GPU, Python and library versions, and a one-line ``summary`` of them."""
    cpu = cpu_model()
    versions = {"torch": torch.__version__, "monai": monai.__version__}
    for package in ("onnxruntime", "segmentation-models-pytorch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        **versions,
    }
    info["summary"] = (
        f"{info['date']}, {cpu} ({info['threads']} threads; GPU: {info['gpu'] or 'none'}), torch {info['torch']}, "
        f"MONAI {info['monai']}"
    )
    return info
