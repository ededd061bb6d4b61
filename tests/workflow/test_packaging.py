"""One import name: the code folders are importable only as sub-packages of ``nerveseg``."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import BUNDLE_ROOT

GENERIC_NAMES = ("transforms", "networks", "scripts", "bundle", "utils")

pytestmark = pytest.mark.slow


def test_no_generic_top_level_module_after_import():
    code = (
        "import sys, nerveseg.utils.files, nerveseg.bundle.data.datalist, nerveseg.bundle.handlers, "
        "nerveseg.transforms, nerveseg.networks, nerveseg.scripts.cli\n"
        f"print(sorted(set(sys.modules) & set({GENERIC_NAMES!r})))"
    )
    # From the bundle root, as MONAI runs a bundle: a generic folder would be importable there, so an import of one
    # shows in sys.modules (elsewhere the same import would fail, which check=True reports too).
    out = subprocess.run([sys.executable, "-c", code], cwd=BUNDLE_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_wheel_holds_only_the_nerveseg_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=BUNDLE_ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("nerveseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"nerveseg", next(t for t in top_level if t.endswith(".dist-info"))}
    for package in ("utils", "bundle", "bundle/data", "bundle/data/synthetic", "transforms", "networks", "scripts",
                    "scripts/bench", "scripts/label_app"):  # fmt: skip
        assert f"nerveseg/{package}/__init__.py" in names
    assert "nerveseg/bundle/data/datalist.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "nerveseg = nerveseg.scripts.cli:main" in entry_points
