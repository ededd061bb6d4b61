"""The installed ``nerveseg`` console script, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NERVESEG = Path(sys.executable).with_name("nerveseg")  # the console script installed beside this Python


@pytest.mark.slow
def test_bench_networks_saves_its_table(tmp_path):
    """The installed ``nerveseg`` script end to end: fire parses a bench part and its options."""
    out = tmp_path / "bench"
    args = ["bench", "networks", "--image_size", "[32, 32]", "--repeats", "1", "--out", str(out)]
    result = subprocess.run([NERVESEG, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "networks.json").read_text())
    assert {"FlexibleUNet efficientnet-b1", "networks/munet.json"} <= {row["network"] for row in rows}
    assert all(row["parameters"] > 0 and row["gflops"] > 0 for row in rows)
    assert "| networks/munet.json |" in (out / "networks.md").read_text()
