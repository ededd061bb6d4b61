"""The machine every benchmark figure belongs to: CPU, threads, GPU and library versions, and whether the
benchmark extra's libraries are installed."""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import importlib.util
import platform
from pathlib import Path
from typing import Any

import monai
import torch

from nerveseg.networks.profile import cpu_model
from nerveseg.utils.errors import UserInputError

__all__ = ["BENCHMARK_EXTRA", "cpu_isa", "describe_machine", "require_benchmark_extra", "unimportable"]

BENCHMARK_EXTRA = "pip install -e '.[benchmark]'"
"""The install command of the extra that brings the peers, nnU-Net, ONNX Runtime and OpenVINO."""


def unimportable(module: str) -> str | None:
    """Why ``module`` (one of the benchmark extra's) cannot be imported, with the install command; ``None`` if it
    imports."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{error}; install the benchmark extra: {BENCHMARK_EXTRA}"
    return None


def require_benchmark_extra(needed_by: str, *modules: str) -> None:
    """Stop, naming the install command, where any of ``modules`` is not installed.

    Raises:
        UserInputError: ``{needed_by} needs {modules}: install the benchmark extra, pip install ...``.
    """
    absent = [module for module in modules if importlib.util.find_spec(module) is None]
    if absent:
        raise UserInputError(f"{needed_by} needs {', '.join(absent)}: install the benchmark extra, {BENCHMARK_EXTRA}")


def cpu_isa() -> str:
    """The CPU's widest vector class that changes the fast path: ``"avx512_bf16"`` (native bfloat16: AVX512-BF16 or
    AMX), ``"avx512"``, ``"avx2"``, or ``"other"`` (e.g. no /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    line = ""
    if cpuinfo.is_file():
        line = next((row for row in cpuinfo.read_text().splitlines() if row.startswith("flags")), "")
    flags = set(line.split())
    if flags & {"avx512_bf16", "amx_bf16"}:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


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
        "cpu_isa": cpu_isa(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        **versions,
    }
    info["summary"] = (
        f"{info['date']}, {cpu} ({info['cpu_isa']}, {info['threads']} threads; GPU: {info['gpu'] or 'none'}), "
        f"torch {info['torch']}, MONAI {info['monai']}"
    )
    return info
