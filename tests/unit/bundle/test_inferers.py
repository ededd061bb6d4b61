"""ASME and flip-TTA inferers: exactness, per-sample weights, batching, members, combine modes, metadata, errors."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate
from torch import nn

from inferer_nets import SCORE_DTYPES, Recorder, WithClassLogits, conv_net, images
from nerveseg.bundle.inference.ensemble import asme_weights, dice_similarity_matrix
from nerveseg.bundle.inference.inferers import FLIP_VIEWS, SCORE_KEYS, ASMEInferer, FlipTTAInferer
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY, with_class_logits
from nerveseg.utils.errors import UserInputError

ALL_VIEWS = ("identity", "lr", "ud", "both")


def members_by_hand(networks, views, x: torch.Tensor) -> list[torch.Tensor]:
    """Each member's logits, one view and one network at a time, flipped back."""
    members = []
    for net in networks:
        for view in views:
            dims = FLIP_VIEWS[view]
            flipped = torch.flip(x, dims) if dims else x
            out = net(flipped)
            members.append(torch.flip(out, dims) if dims else out)
    return members


def asme_by_hand(networks, views, x, base=100.0, threshold=0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """ASME per sample with batch size 1 and one forward per view: the logits and the ``[B, N]`` weights."""
    outputs, weights = [], []
    for b in range(x.shape[0]):
        members = members_by_hand(networks, views, x[b : b + 1])
        similarity = dice_similarity_matrix(torch.stack([z[0].sigmoid() > threshold for z in members]))
        w = asme_weights(similarity, base)
        outputs.append(sum(wi.float() * z for wi, z in zip(w, members, strict=True)))
        weights.append(w)
    return torch.cat(outputs), torch.stack(weights).float()


@pytest.mark.parametrize("views", [("identity",), ("identity", "lr"), ("lr", "ud", "both"), ALL_VIEWS])
@pytest.mark.parametrize("adaptive", [True, False])
def test_identity_network_returns_its_input_exactly(views, adaptive):
    x = images(2)
    inferer = ASMEInferer(views=views, adaptive=adaptive)
    out = inferer(x, nn.Identity())
    assert torch.equal(out, x)
    torch.testing.assert_close(inferer.last_scores["asme_weights"], torch.full((2, len(views)), 1 / len(views)))


def test_equal_views_give_uniform_weights():
    symmetric = nn.Conv2d(1, 1, 3, padding=1, bias=False).requires_grad_(False)
    symmetric.weight.copy_(torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]).view(1, 1, 3, 3))
    inferer = ASMEInferer()
    out = inferer(images(3), symmetric)
    torch.testing.assert_close(inferer.last_scores["asme_weights"], torch.full((3, 4), 0.25))
    torch.testing.assert_close(inferer.last_scores["asme_consistency"], torch.ones(3))
    torch.testing.assert_close(inferer.last_scores["asme_eigenvalue_ratio"], torch.ones(3))
    torch.testing.assert_close(out, symmetric(images(3)))


def test_batch_of_three_equals_three_batches_of_one():
    net, x, inferer = conv_net(), images(3), ASMEInferer()
    batched = inferer(x, net)
    weights = inferer.last_scores["asme_weights"]
    assert not torch.allclose(weights, torch.full_like(weights, 0.25), atol=1e-3)  # the views disagree
    assert not torch.allclose(weights[0], weights[1])  # and differently per sample
    singles = []
    for b in range(3):
        singles.append(inferer(x[b : b + 1], net))
        torch.testing.assert_close(inferer.last_scores["asme_weights"][0], weights[b])
    torch.testing.assert_close(batched, torch.cat(singles))


def test_batched_and_chunked_equals_view_by_view():
    net, x = Recorder(conv_net()), images(2)
    inferer = ASMEInferer(max_batch=3)
    out = inferer(x, net)
    assert net.batch_sizes == [3, 3, 2]  # 4 views x 2 samples in forwards of at most 3
    expected, weights = asme_by_hand([net.net], ALL_VIEWS, x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(inferer.last_scores["asme_weights"], weights)


def test_non_adaptive_is_the_plain_mean_of_the_members():
    net, x = conv_net(), images(2)
    expected = torch.stack(members_by_hand([net], ALL_VIEWS, x)).mean(0)
    torch.testing.assert_close(ASMEInferer(adaptive=False)(x, net), expected)
    flip_tta = FlipTTAInferer()
    torch.testing.assert_close(flip_tta(x, net), expected)
    assert not flip_tta.adaptive
    torch.testing.assert_close(flip_tta.last_scores["asme_weights"], torch.full((2, 4), 0.25))


def test_two_networks_times_two_views_are_four_members():
    first, second, x = conv_net(0), conv_net(1), images(2)
    second.train()
    inferer = ASMEInferer(views=("identity", "ud"), networks=[second])
    out = inferer(x, first.eval())
    assert not second.training  # the extra networks follow the main network's mode
    assert inferer.last_scores["asme_weights"].shape == (2, 4)
    expected, weights = asme_by_hand([first, second], ("identity", "ud"), x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(inferer.last_scores["asme_weights"], weights)


def test_combine_probabilities_is_the_logit_of_the_weighted_mean_probability():
    net, x = conv_net(out_channels=2), images(2)
    inferer = ASMEInferer(combine="probabilities")
    out = inferer(x, net)
    assert out.shape == (2, 2, 16, 16)
    weights = inferer.last_scores["asme_weights"]
    members = torch.stack(members_by_hand([net], ALL_VIEWS, x))  # [N, B, C, H, W]
    for b in range(2):
        # two channels are compared jointly: one [C, H, W] mask per member
        similarity = dice_similarity_matrix(members[:, b].sigmoid() > 0.5)
        torch.testing.assert_close(weights[b], asme_weights(similarity).float())
    mean = (weights.T.reshape(4, 2, 1, 1, 1) * members.sigmoid()).sum(0)
    torch.testing.assert_close(out, torch.logit(mean, eps=1e-6), atol=1e-4, rtol=1e-5)
    assert not torch.allclose(out, ASMEInferer()(x, net), atol=1e-3)


def test_metadata_and_scores_decollate_per_sample():
    batch = list_data_collate(
        [{"image": MetaTensor(images(1, seed=i)[0], meta={"filename_or_obj": f"{i}.tif"})} for i in range(2)]
    )
    net, inferer = WithClassLogits(), ASMEInferer()
    out = inferer(batch["image"], net)
    assert isinstance(out, MetaTensor) and out.shape == (2, 1, 16, 16)
    plain = batch["image"].as_tensor()
    expected, weights = asme_by_hand([lambda x: net.net(x)], ALL_VIEWS, plain)
    torch.testing.assert_close(out.as_tensor(), expected)
    torch.testing.assert_close(out.meta["asme_weights"], weights)
    for key in SCORE_KEYS:
        assert out.meta[key].dtype == SCORE_DTYPES.get(key, torch.float32) and out.meta[key].shape[0] == 2
        assert key not in batch["image"].meta
    # class logits: each view's [B, 2], weighted per sample with the mask weights
    views = [torch.flip(plain, FLIP_VIEWS[v]) if FLIP_VIEWS[v] else plain for v in ALL_VIEWS]
    class_logits = torch.stack([v[:, 0, 0, :2] for v in views])  # [N, B, 2]
    expected_class = (weights.T.unsqueeze(-1) * class_logits).sum(0)
    torch.testing.assert_close(out.meta[CLASS_LOGITS_KEY], expected_class)

    samples = decollate_batch(out)
    assert [s.meta["filename_or_obj"] for s in samples] == ["0.tif", "1.tif"]
    for b, sample in enumerate(samples):
        assert sample.shape == (1, 16, 16)
        torch.testing.assert_close(sample.meta["asme_weights"], weights[b])
        # decollate_batch turns the 0-d per-sample scores into Python floats
        assert sample.meta["asme_consistency"] == pytest.approx(inferer.last_scores["asme_consistency"][b].item())
        assert sample.meta["asme_eigenvalue_ratio"] == pytest.approx(out.meta["asme_eigenvalue_ratio"][b].item())
        assert 0 < sample.meta["asme_consistency"] < 1
        torch.testing.assert_close(sample.meta[CLASS_LOGITS_KEY], expected_class[b])


def test_plain_network_on_metatensor_input_keeps_metadata():
    x = MetaTensor(images(2), meta={"filename_or_obj": ["a.tif", "b.tif"]})
    out = FlipTTAInferer(views=("identity", "lr"))(x, conv_net())
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == ["a.tif", "b.tif"]
    assert CLASS_LOGITS_KEY not in out.meta and out.meta["asme_weights"].shape == (2, 2)


def test_members_that_disagree_on_class_logits_are_refused():
    x = MetaTensor(images(1))
    with pytest.raises(ValueError, match="Some ensemble members carry meta"):
        ASMEInferer(views=("identity",), networks=[conv_net()])(x, WithClassLogits())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"views": ("lr", "rot90")}, r"Unknown views \['rot90'\]; choose from \['both', 'identity', 'lr', 'ud'\]"),
        ({"views": ()}, r"at least one view"),
        ({"views": ("lr", "lr")}, r"distinct"),
        ({"combine": "mean"}, r"Unknown combine 'mean'; choose from \['logits', 'probabilities'\]"),
        ({"threshold": 1.0}, r"threshold must be in \(0, 1\), got 1\.0"),
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\), got 0\.0"),
        ({"max_batch": 0}, r"max_batch must be >= 1, got 0"),
        ({"base": 0.0}, r"base must be > 0, got 0\.0"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ASMEInferer(**kwargs)


def test_call_errors():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\], got shape \(1, 16, 16\)"):
        ASMEInferer()(torch.zeros(1, 16, 16), nn.Identity())
    with pytest.raises(ValueError, match=r"at the input size \(16, 16\)"):
        ASMEInferer()(images(1), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"returned list"):
        ASMEInferer()(images(1), lambda x: [x, x])


class Region(nn.Module):
    """Logits ``x`` inside a fixed region and -10 outside, recording the batch size of every forward.

    Flipped back, each view's mask lies in the region's mirror image: with the top-left quadrant no two views of a
    positive image overlap (Dice 0); with the left half the identity and up-down views agree. A negative image's
    masks are all empty, so its views agree (Dice 1). ``class_logits`` adds view-dependent ``[B, 2]`` class logits.
    """

    def __init__(self, region: str = "quadrant", class_logits: bool = False) -> None:
        super().__init__()
        self.region, self.class_logits = region, class_logits
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = x.as_tensor() if isinstance(x, MetaTensor) else x
        self.batch_sizes.append(plain.shape[0])
        h, w = plain.shape[-2:]
        inside = torch.zeros(h, w, dtype=torch.bool)
        inside[: h // 2 if self.region == "quadrant" else h, : w // 2] = True
        out = torch.where(inside, plain, torch.full_like(plain, -10.0))
        return with_class_logits(out, plain[:, 0, 0, :2], x) if self.class_logits else out


def signed_images(*signs: float) -> torch.Tensor:
    """One image per sign: ``sign * (1 + |noise|)``, so every pixel of an image is on one side of 0."""
    noise = images(len(signs)).abs() + 1
    return noise * torch.tensor(signs).view(-1, 1, 1, 1)


def test_early_stop_when_the_first_two_views_agree_computes_no_more_views():
    net, x = Recorder(nn.Identity()), images(3)
    inferer = ASMEInferer(stop_agreement=0.9)
    out = inferer(x, net)
    assert net.batch_sizes == [6]  # the first two views of the 3 samples in one forward, and no other
    assert torch.equal(out, x)  # agreeing members come back bit for bit
    torch.testing.assert_close(inferer.last_scores["asme_views_used"], torch.tensor([2, 2, 2]))
    torch.testing.assert_close(inferer.last_scores["asme_weights"], torch.tensor([[0.5, 0.5, 0.0, 0.0]]).expand(3, 4))
    torch.testing.assert_close(inferer.last_scores["asme_consistency"], torch.ones(3))


@pytest.mark.parametrize("inferer_class", [ASMEInferer, FlipTTAInferer])
def test_a_sample_whose_views_disagree_runs_every_view_while_another_stops_at_two(inferer_class):
    net, x = Region("quadrant"), signed_images(-1, 1, -1)
    inferer = inferer_class(stop_agreement=0.9)
    out = inferer(x, net)
    assert net.batch_sizes == [6, 2]  # the last two views in one forward, only for the sample still running
    scores = inferer.last_scores
    assert scores["asme_views_used"].tolist() == [2, 4, 2]
    weights = scores["asme_weights"]
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(weights[[0, 2]], torch.tensor([[0.5, 0.5, 0.0, 0.0]]).expand(2, 4))
    torch.testing.assert_close(weights[1], torch.full((4,), 0.25))  # four disjoint masks weigh alike
    assert scores["asme_consistency"].tolist() == [1.0, 0.0, 1.0]
    torch.testing.assert_close(scores["asme_eigenvalue_ratio"], torch.tensor([1.0, 0.25, 1.0]))
    members = torch.stack(members_by_hand([net], ALL_VIEWS, x))
    torch.testing.assert_close(out[[0, 2]], members[:2, [0, 2]].mean(0))
    torch.testing.assert_close(out[1], members[:, 1].mean(0))
    full = inferer_class()
    torch.testing.assert_close(out[1], full(x, net)[1])


def test_a_sample_whose_first_two_views_disagree_gets_the_others_in_one_forward():
    x, net = signed_images(1), Region("left")
    inferer = ASMEInferer(stop_agreement=1.0)
    out = inferer(x, net)  # identity: left half, lr: right half; ud would agree with identity, but comes with both
    assert net.batch_sizes == [2, 2] and inferer.last_scores["asme_views_used"].tolist() == [4]
    weights = inferer.last_scores["asme_weights"][0]
    torch.testing.assert_close(weights, torch.full((4,), 0.25))  # two pairs of identical masks weigh alike
    expected, _ = asme_by_hand([net], ALL_VIEWS, x)
    torch.testing.assert_close(out, expected)


def test_early_stop_gives_a_batch_the_results_of_its_samples_one_by_one():
    # the first two views' masks have Dice 0.605, 0.615 and 0.655 for the three images: 0.635 is 0.02 from each
    net, x, inferer = conv_net(), images(3), ASMEInferer(stop_agreement=0.635, max_batch=4)
    batched = inferer(x, net)
    scores = inferer.last_scores
    assert scores["asme_views_used"].tolist() == [4, 4, 2]
    for b in range(3):
        torch.testing.assert_close(inferer(x[b : b + 1], net), batched[b : b + 1])
        for key, value in inferer.last_scores.items():
            torch.testing.assert_close(value[0], scores[key][b])
    expected, weights = asme_by_hand([net], ALL_VIEWS[:2], x[2:])
    torch.testing.assert_close(batched[2:], expected)
    torch.testing.assert_close(scores["asme_weights"][2:, :2], weights)
    torch.testing.assert_close(batched[:2], asme_by_hand([net], ALL_VIEWS, x[:2])[0])


def test_without_stop_agreement_every_view_is_computed_as_before():
    net, x = Recorder(conv_net()), images(3)
    out = ASMEInferer(stop_agreement=None, max_batch=5)(x, net)
    assert net.batch_sizes == [5, 5, 2]
    assert torch.equal(out, ASMEInferer(max_batch=5)(x, net.net))
    expected, _ = asme_by_hand([net.net], ALL_VIEWS, x)
    torch.testing.assert_close(out, expected)
    inferer = ASMEInferer(stop_agreement=1.0)  # no two masks are the same: every view, the same ensemble
    torch.testing.assert_close(inferer(x, net.net), out)
    assert inferer.last_scores["asme_views_used"].tolist() == [4, 4, 4]


def test_early_stop_with_extra_networks_keeps_whole_views():
    first, second, x = Recorder(nn.Identity()), Recorder(nn.Identity()), images(2)
    inferer = ASMEInferer(views=("identity", "lr", "ud"), networks=[second], stop_agreement=0.9)
    out = inferer(x, first)
    assert first.batch_sizes == second.batch_sizes == [4]
    assert torch.equal(out, x)
    assert inferer.last_scores["asme_views_used"].tolist() == [4, 4]
    expected = torch.tensor([0.25, 0.25, 0.0, 0.25, 0.25, 0.0]).expand(2, 6)
    torch.testing.assert_close(inferer.last_scores["asme_weights"], expected)


def test_views_used_and_class_logits_decollate_per_sample_with_early_stop():
    batch = list_data_collate(
        [
            {"image": MetaTensor(signed_images(sign)[0], meta={"filename_or_obj": f"{i}.tif"})}
            for i, sign in enumerate((-1, 1))
        ]
    )
    inferer = ASMEInferer(stop_agreement=0.9)
    out = inferer(batch["image"], Region("quadrant", class_logits=True))
    weights = out.meta["asme_weights"]
    assert out.meta["asme_views_used"].tolist() == [2, 4]
    plain = batch["image"].as_tensor()
    views = [torch.flip(plain, FLIP_VIEWS[v]) if FLIP_VIEWS[v] else plain for v in ALL_VIEWS]
    class_logits = torch.stack([v[:, 0, 0, :2] for v in views])  # [N, B, 2]
    expected_class = (weights.T.unsqueeze(-1) * class_logits).sum(0)
    torch.testing.assert_close(out.meta[CLASS_LOGITS_KEY], expected_class)
    samples = decollate_batch(out)
    assert [s.meta["asme_views_used"] for s in samples] == [2, 4]
    assert [s.meta["asme_consistency"] for s in samples] == [1.0, 0.0]
    for b, sample in enumerate(samples):
        torch.testing.assert_close(sample.meta["asme_weights"], weights[b])
        torch.testing.assert_close(sample.meta[CLASS_LOGITS_KEY], expected_class[b])


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, float("nan"), "high", True])
def test_stop_agreement_out_of_range_names_the_key_and_the_fix(value):
    match = r"stop_agreement \(asme_stop_agreement in configs/asme.json\) must be .*; set a mask Dice in \(0, 1\]"
    with pytest.raises(UserInputError, match=match + r", e\.g\. 0\.9, or None to compute every view"):
        ASMEInferer(stop_agreement=value)
    with pytest.raises(UserInputError, match=match):
        FlipTTAInferer(stop_agreement=value)
