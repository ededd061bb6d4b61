"""Synthetic ultrasound-nerve dataset: layout, formats, determinism, atomic writes, the default statistics, and the
generator's building blocks (outlines, canvas, noise, presence runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from nerveseg.bundle.data.synthetic import (
    IMAGE_SHAPE,
    SYNTHETIC_VERSION,
    default_dataset_dir,
    generate_dataset,
    generator,
)
from nerveseg.bundle.data.synthetic.canvas import CanvasGeometry, bilinear_crop
from nerveseg.bundle.data.synthetic.noise_fields import filtered_noise
from nerveseg.bundle.data.synthetic.outlines import place_disc, random_outline
from nerveseg.bundle.data.synthetic.subject_sampling import draw_presence, run_edges, sequence_quantiles

TINY = {"num_subjects": 4, "frames_per_subject": 8, "num_test_images": 5, "seed": 0, "image_shape": (64, 96)}


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L", f"{path.name}: mode {image.mode}"
        return np.asarray(image)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "tiny", **TINY)


def test_layout_and_names(tiny):
    assert sorted(p.name for p in tiny.iterdir()) == ["dataset.json", "test", "train"]
    expected = {f"{s}_{f}{suffix}.tif" for s in range(1, 5) for f in range(1, 9) for suffix in ("", "_mask")}
    assert {p.name for p in (tiny / "train").iterdir()} == expected
    assert {p.name for p in (tiny / "test").iterdir()} == {f"{i}.tif" for i in range(1, 6)}


def test_images_and_masks(tiny):
    for path in sorted((tiny / "train").glob("*_mask.tif")):
        image = _load(path.with_name(path.name.replace("_mask", "")))
        mask = _load(path)
        assert image.shape == mask.shape == (64, 96) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}, f"{path.name}: values {np.unique(mask)}"
        if mask.any():
            assert ndimage.label(mask > 0)[1] == 1, f"{path.name}: nerve mask is not one connected component"
        assert image.std() > 10, f"{path.name}: image looks blank"
    for path in (tiny / "test").iterdir():
        assert _load(path).shape == (64, 96)
    with Image.open(tiny / "train" / "1_1.tif") as image:
        assert image.size == (96, 64) and image.info.get("compression") == "raw"


def test_dataset_json(tiny):
    info = json.loads((tiny / "dataset.json").read_text())
    assert info["synthetic_version"] == SYNTHETIC_VERSION
    assert info["parameters"] == {**TINY, "image_shape": [64, 96]}
    assert info["num_train_frames"] == 32
    positives = sum(_load(p).any() for p in (tiny / "train").glob("*_mask.tif"))
    assert info["num_positive"] == positives and info["positive_rate"] == pytest.approx(positives / 32, abs=1e-4)
    assert set(info["per_subject_positive_rate"]) == {"1", "2", "3", "4"}
    assert 0 < info["mask_area_px"]["min"] <= info["mask_area_px"]["median"] <= info["mask_area_px"]["max"]


def test_nerve_runs_are_contiguous_and_every_subject_has_both_classes(tiny):
    for subject in range(1, 5):
        present = np.array([_load(tiny / "train" / f"{subject}_{f}_mask.tif").any() for f in range(1, 9)])
        assert 0 < present.sum() < 8, f"subject {subject}: presence {present}"
        assert np.count_nonzero(np.diff(present.astype(int))) <= 5, f"subject {subject}: presence {present}"


def test_conflicting_duplicates(tiny):
    pairs = json.loads((tiny / "dataset.json").read_text())["duplicate_pairs"]
    assert pairs, "expected at least one conflicting duplicate pair in the tiny set"
    for pair in pairs:
        with_mask, without_mask = (tiny / "train" / f"{pair[key]}.tif" for key in ("with_mask", "without_mask"))
        assert with_mask.name.split("_")[0] == without_mask.name.split("_")[0] == str(pair["subject"])
        np.testing.assert_array_equal(_load(with_mask), _load(without_mask))
        assert _load(with_mask.with_name(with_mask.stem + "_mask.tif")).any()
        assert not _load(without_mask.with_name(without_mask.stem + "_mask.tif")).any()


def test_deterministic(tiny, tmp_path):
    again = generate_dataset(tmp_path / "again", **TINY)
    assert _files(again) == _files(tiny)
    other_seed = generate_dataset(tmp_path / "other", **{**TINY, "seed": 1, "num_test_images": 0})
    assert _load(other_seed / "train" / "1_1.tif").tobytes() != _load(tiny / "train" / "1_1.tif").tobytes()


def test_subjects_do_not_depend_on_the_subject_count(tiny, tmp_path):
    fewer = generate_dataset(tmp_path / "fewer", **{**TINY, "num_subjects": 2, "num_test_images": 0})
    for name in ("1_1.tif", "2_8_mask.tif", "2_3.tif"):
        assert (fewer / "train" / name).read_bytes() == (tiny / "train" / name).read_bytes()


def test_atomic_write(tmp_path, monkeypatch):
    out = generate_dataset(tmp_path / "data", **{**TINY, "num_subjects": 1})
    assert out == tmp_path / "data"
    assert [p.name for p in tmp_path.iterdir()] == ["data"], "temporary folder left behind"

    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate_dataset(out, **TINY)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate_dataset(empty, **{**TINY, "num_subjects": 1}) / "dataset.json").is_file()

    calls = {"n": 0}
    save = generator._save_tiff

    def failing_save(array, path):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated interruption")
        save(array, path)

    monkeypatch.setattr(generator, "_save_tiff", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "interrupted", **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "empty"]


def test_another_process_finishing_first_wins(tmp_path, monkeypatch):
    target = tmp_path / "data"
    write = generator._write_dataset
    raced = []

    def racing_write(root, *args):
        write(root, *args)
        if not raced:  # another process completes the folder while this one is still writing
            raced.append(True)
            other = generate_dataset(tmp_path / "other", **{**TINY, "num_subjects": 1, "num_test_images": 1})
            other.rename(target)

    monkeypatch.setattr(generator, "_write_dataset", racing_write)
    assert generate_dataset(target, **{**TINY, "num_subjects": 2}) == target
    assert json.loads((target / "dataset.json").read_text())["parameters"]["num_subjects"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_subjects": 0}, "num_subjects must be >= 1, got 0"),
        ({"frames_per_subject": 1}, "frames_per_subject must be >= 2"),
        ({"num_test_images": -1}, "num_test_images must be >= 0"),
        ({"seed": -3}, "seed must be a non-negative integer, got -3"),
        ({"image_shape": (31, 96)}, r"both sides >= 32, got \(31, 96\)"),
        ({"image_shape": (64, 16)}, r"got \(64, 16\)"),
        ({"image_shape": (64, 96, 3)}, r"got \(64, 96, 3\)"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_dataset(tmp_path / "bad", **{**TINY, **kwargs})
    assert not any(tmp_path.iterdir())


def test_default_dataset_dir_returns_existing_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NERVESEG_CACHE", str(tmp_path))
    folder = tmp_path / f"synthetic-v{SYNTHETIC_VERSION}"
    folder.mkdir()
    (folder / "dataset.json").write_text("{}")
    monkeypatch.setattr(generator, "generate_dataset", lambda *a, **k: pytest.fail("must not regenerate"))
    assert default_dataset_dir() == folder


def test_default_dataset_dir_generates_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("NERVESEG_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(generator, "generate_dataset", lambda out_dir: calls.append(Path(out_dir)) or Path(out_dir))
    assert default_dataset_dir() == tmp_path / "cache" / f"synthetic-v{SYNTHETIC_VERSION}"
    assert calls == [tmp_path / "cache" / f"synthetic-v{SYNTHETIC_VERSION}"]


# --- building blocks -------------------------------------------------------------------------------------------------


def test_geometry_scales_relative_to_the_challenge_images():
    full = CanvasGeometry.for_shape(IMAGE_SHAPE)
    assert full.s == full.area_scale == 1.0 and (full.h, full.w) == IMAGE_SHAPE
    assert (full.hc, full.wc) == (420 + 2 * full.my + 1, 580 + 2 * full.mx + 1)
    half = CanvasGeometry.for_shape((210, 290))
    assert half.s == pytest.approx(0.5) and half.area_scale == pytest.approx(0.25)
    assert half.rows().shape == (half.hc, 1) and half.columns().shape == (1, half.wc)


@pytest.mark.parametrize("area", [400.0, 7400.0])
def test_outline_encloses_its_area(area):
    outline = random_outline(np.random.default_rng(0), area, (1.2, 2.0), 0.22, 0.35)
    assert outline.area() == pytest.approx(area, rel=1e-6)
    assert outline.scaled(2.0).area() == pytest.approx(4 * area, rel=1e-6)
    half = outline.rmax() + 2
    dy, dx = np.mgrid[-half:half:0.25, -half:half:0.25]
    inside = outline.radius(np.arctan2(dy, dx)) > np.hypot(dy, dx)
    assert inside.sum() * 0.25**2 == pytest.approx(area, rel=0.02)  # pixel count of the filled outline


def test_place_disc_keeps_the_gap():
    rng = np.random.default_rng(0)
    taken = [(50.0, 50.0, 20.0)]
    for _ in range(20):
        cy, cx = place_disc(rng, 10.0, (0.0, 100.0), (0.0, 100.0), taken, 5.0)
        assert np.hypot(cy - 50.0, cx - 50.0) > 35.0
    assert place_disc(rng, 10.0, (60.0, 40.0), (0.0, 100.0), taken, 5.0) is None  # empty range
    assert place_disc(rng, 60.0, (50.0, 50.0), (50.0, 50.0), taken, 0.0) is None  # no room


def test_bilinear_crop():
    canvas = np.arange(48, dtype=np.float32).reshape(6, 8)
    np.testing.assert_array_equal(bilinear_crop(canvas, 1.0, 2.0, 3, 4), canvas[1:4, 2:6])
    expected = (canvas[1:4, 2:6] + canvas[1:4, 3:7] + canvas[2:5, 2:6] + canvas[2:5, 3:7]) / 4
    np.testing.assert_allclose(bilinear_crop(canvas, 1.5, 2.5, 3, 4), expected)


def test_filtered_noise_is_unit_variance_and_elongated():
    noise = filtered_noise(np.random.default_rng(0), (128, 128), (1.0, 4.0))
    assert noise.dtype == np.float32 and noise.std() == pytest.approx(1.0, rel=1e-5)
    along = np.mean(noise[:, 1:] * noise[:, :-1])  # horizontal neighbours correlate more than vertical ones
    across = np.mean(noise[1:, :] * noise[:-1, :])
    assert along > across + 0.1, (along, across)


def test_rate_quantiles_are_antithetic_pairs():
    for index in (1, 3, 5):
        assert sequence_quantiles(0, 0, index)[0] + sequence_quantiles(0, 0, index + 1)[0] == pytest.approx(1.0)
    assert all(0.0 <= u < 1.0 for index in range(1, 9) for u in sequence_quantiles(3, 1, index))


@pytest.mark.parametrize("u_rate", [0.01, 0.5, 0.99])
def test_presence_runs_and_duplicate_pair(u_rate):
    rng = np.random.default_rng(1)
    rate, presence, duplicate = draw_presence(rng, 20, u_rate, u_duplicate=0.0, with_duplicate=True)
    assert presence.sum() == int(np.clip(round(rate * 20), 1, 19))
    assert np.count_nonzero(np.diff(presence.astype(int))) <= 5  # at most three runs
    positive, negative = duplicate
    assert abs(positive - negative) == 1 and presence[positive] and not presence[negative]
    assert draw_presence(rng, 20, u_rate, u_duplicate=0.5, with_duplicate=True)[2] is None
    assert draw_presence(rng, 20, u_rate, u_duplicate=0.0, with_duplicate=False)[2] is None


def test_run_edges():
    presence = np.array([1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    np.testing.assert_array_equal(run_edges(presence), [0, 1, 0, 0, 1, 0, 1, 0, 1])
