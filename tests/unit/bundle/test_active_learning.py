"""ASME-consistency active learning without MONAI Label: scores, selection, the bundle scorer, the app layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import BUNDLE_ROOT, TINY_NETWORK
from nerveseg.bundle.active_learning import BundleConsistencyScorer, asme_consistency, least_consistent
from nerveseg.scripts.label_app.layout import OFFLINE_CONF, create_app, start_command


class Echo(nn.Module):
    """Logits ``4 * (x - 0.5)``: a flip-equivariant network, every view gives the same mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 4 * (x - 0.5)


class LeftHalf(nn.Module):
    """Foreground on the left half whatever the input: flipped back, the ``lr`` view is the right half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(x, -5.0)
        out[..., : x.shape[-1] // 2] = 5.0
        return out


def test_consistency_of_an_equivariant_network_is_one():
    images = (torch.rand(3, 1, 16, 24) > 0.5).float()
    scores = asme_consistency(Echo(), images)
    torch.testing.assert_close(scores, torch.ones(3))


def test_consistency_of_views_that_disagree():
    images = torch.rand(2, 1, 16, 24)
    # identity and lr masks are disjoint halves: Dice 0.
    torch.testing.assert_close(asme_consistency(LeftHalf(), images, views=("identity", "lr")), torch.zeros(2))
    # identity = ud (left half), lr = both (right half): off-diagonal Dice 1, 0, 0, 0, 0, 1 -> mean 1/3.
    torch.testing.assert_close(asme_consistency(LeftHalf(), images), torch.full((2,), 1 / 3))


def test_consistency_does_not_depend_on_batch_size_and_restores_mode():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    network.train()
    images = torch.rand(5, 1, 16, 16)
    one = asme_consistency(network, images, batch_size=1)
    all_at_once = asme_consistency(network, images, batch_size=5)
    torch.testing.assert_close(one, all_at_once)
    assert network.training
    assert ((one >= 0) & (one <= 1)).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"views": ("identity",)}, "at least two"),
        ({"views": "lr"}, "at least two"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_consistency_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        asme_consistency(Echo(), torch.rand(1, 1, 8, 8), **kwargs)


def test_consistency_rejects_images_without_batch_dimension():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        asme_consistency(Echo(), torch.rand(1, 8, 8))


def test_least_consistent_orders_excludes_and_counts():
    scores = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.3}
    assert least_consistent(scores) == ["b"]
    assert least_consistent(scores, count=3) == ["b", "d", "c"]
    assert least_consistent(scores, count=2, exclude={"b"}) == ["d", "c"]
    assert least_consistent(scores, count=10) == ["b", "d", "c", "a"]
    assert least_consistent(scores, exclude=scores) == []


def test_least_consistent_ties_are_reproducible():
    scores = {f"img{i}": 1.0 for i in range(10)} | {"low": 0.2}
    assert least_consistent(scores, count=3) == ["low", "img0", "img1"]
    seeded = least_consistent(scores, count=5, seed=3)
    assert seeded == least_consistent(scores, count=5, seed=3)
    assert seeded[0] == "low"
    orders = {tuple(least_consistent(scores, count=5, seed=s)) for s in range(5)}
    assert len(orders) > 1  # the seed does shuffle the ties


@pytest.mark.parametrize("bad", [math.nan, math.inf, "0.5", None])
def test_least_consistent_rejects_non_numbers(bad):
    with pytest.raises(ValueError, match="'x'"):
        least_consistent({"x": bad, "y": 0.5})


def test_least_consistent_rejects_bad_count():
    with pytest.raises(ValueError, match="count"):
        least_consistent({"x": 0.5}, count=0)


@pytest.fixture()
def scorer_inputs(tmp_path):
    """Two 8-bit PNGs of different sizes, a non-image, and a random tiny checkpoint."""
    rng = np.random.default_rng(0)
    paths = {}
    for name, shape in (("a", (40, 56)), ("b", (33, 47))):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[name])
    (tmp_path / "bad.png").write_text("not an image")
    torch.manual_seed(0)
    from monai.networks.nets import BasicUNet

    network = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=(4, 4, 8, 8, 16, 4))
    (tmp_path / "models").mkdir()
    torch.save(network.state_dict(), tmp_path / "models" / "model.pt")
    return tmp_path, paths


def test_bundle_scorer_scores_files_with_the_bundle_preprocessing(scorer_inputs):
    folder, paths = scorer_inputs
    scorer = BundleConsistencyScorer(
        BUNDLE_ROOT,
        overrides={"image_size": [32, 32], "network_def": TINY_NETWORK, "ckpt_dir": str(folder / "models")},
        device="cpu",
    )
    scores = scorer(paths)
    assert set(scores) == {"a", "b"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    again = scorer({"b": paths["b"], "a": paths["a"]})
    assert again == pytest.approx(scores)


def test_bundle_scorer_errors_name_the_fix(scorer_inputs, tmp_path):
    folder, _ = scorer_inputs
    overrides = {"image_size": [32, 32], "network_def": TINY_NETWORK}
    missing = BundleConsistencyScorer(BUNDLE_ROOT, overrides={**overrides, "ckpt_dir": str(tmp_path / "none")})
    with pytest.raises(ValueError, match="train the model first"):
        missing({"a": folder / "a.png"})
    scorer = BundleConsistencyScorer(BUNDLE_ROOT, overrides={**overrides, "ckpt_dir": str(folder / "models")})
    with pytest.raises(ValueError, match="'bad'"):
        scorer({"bad": folder / "bad.png"})
    with pytest.raises(ValueError, match="configs/"):
        BundleConsistencyScorer(tmp_path / "no_bundle")


def test_create_app_lays_out_bundle_configs_and_studies(tmp_path):
    images = tmp_path / "source"
    images.mkdir()
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(images / "1_1.tif")
    Image.fromarray(np.full((8, 12), 255, np.uint8)).save(images / "1_1_mask.tif")
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(images / "7.png")
    (images / "notes.txt").write_text("ignored")
    checkpoint = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, checkpoint)

    app = create_app(
        tmp_path / "app",
        BUNDLE_ROOT,
        checkpoint=checkpoint,
        overrides={"image_size": [64, 96], "num_workers": 0},
        infer_configs=["configs/asme.json"],
        studies=tmp_path / "studies",
        images=images,
    )
    bundle = app / "model" / "nerveseg"
    assert (app / "main.py").read_text().count("NervesegApp") >= 1
    assert (bundle / "models" / "model.pt").read_bytes() == checkpoint.read_bytes()
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    train = json.loads((bundle / "configs" / "train.json").read_text())
    asme = json.loads((BUNDLE_ROOT / "configs" / "asme.json").read_text())
    for config in (inference, train):
        assert config["image_size"] == [64, 96] and config["num_workers"] == 0
    for key, value in asme.items():
        assert inference[key] == value
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "nerve"}
    studies = tmp_path / "studies"
    assert sorted(p.name for p in studies.iterdir()) == ["1_1.tif", "7.png", "labels"]
    assert [p.name for p in (studies / "labels" / "final").iterdir()] == ["1_1.tif"]

    # Laying out again replaces the bundle (a new checkpoint) and keeps what the server wrote beside it.
    (app / "logs").mkdir()
    create_app(tmp_path / "app", BUNDLE_ROOT)
    assert (app / "logs").is_dir()
    trained = BUNDLE_ROOT / "models" / "model.pt"
    if trained.is_file():
        assert (bundle / "models" / "model.pt").read_bytes() == trained.read_bytes()
    else:
        assert not (bundle / "models" / "model.pt").exists()


def test_create_app_errors(tmp_path):
    with pytest.raises(ValueError, match="Checkpoint"):
        create_app(tmp_path / "app", BUNDLE_ROOT, checkpoint=tmp_path / "none.pt")
    with pytest.raises(ValueError, match="configs"):
        create_app(tmp_path / "app", tmp_path)
    with pytest.raises(ValueError, match="relative to bundle_root"):
        create_app(tmp_path / "app", BUNDLE_ROOT, configs=["configs/none.json"])
    with pytest.raises(ValueError, match="studies"):
        create_app(tmp_path / "app", BUNDLE_ROOT, images=tmp_path)


def test_start_command_is_offline():
    command = start_command("/a", "/s", port=8123)
    assert command[:8] == ["python", "-m", "monailabel.main", "start_server", "--app", "/a", "--studies", "/s"]
    pairs = {(command[i + 1], command[i + 2]) for i, word in enumerate(command) if word == "--conf"}
    assert {("models", "nerveseg"), *OFFLINE_CONF.items()} == pairs
    assert command[-4:] == ["--host", "127.0.0.1", "--port", "8123"]
    assert start_command("/a", "/s", python="/py")[:3] == ["/py", "-m", "monailabel.main"]
