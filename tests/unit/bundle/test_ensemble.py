"""ASME maths: Dice similarity, the principal eigenvector (the paper's worked example), weights and scores."""

from __future__ import annotations

import pytest
import torch

from nerveseg.bundle.inference.ensemble import (
    asme_weights,
    consistency_scores,
    dice_similarity_matrix,
    principal_eigenpair,
)

# Table 1 of the nerve seed: Dice similarity of the four flipped views of test image 9.tif.
PAPER_A = torch.tensor(
    [[1.0, 0.0, 0.52, 0.79], [0.0, 1.0, 0.0, 0.0], [0.52, 0.0, 1.0, 0.65], [0.79, 0.0, 0.65, 1.0]],
    dtype=torch.float64,
)


def test_paper_worked_example():
    eigenvalue, vector = principal_eigenpair(PAPER_A)
    expected_vector = torch.tensor([0.58105, 0.0, 0.53414, 0.61407], dtype=torch.float64)
    torch.testing.assert_close(vector, expected_vector, atol=1e-5, rtol=0)
    torch.testing.assert_close(PAPER_A @ vector, eigenvalue * vector)
    assert eigenvalue == pytest.approx(torch.linalg.eigvalsh(PAPER_A).max().item())
    weights = asme_weights(PAPER_A)
    expected_weights = torch.tensor([0.32907, 0.02266, 0.26515, 0.38312], dtype=torch.float64)
    torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=0)
    assert weights.dtype == torch.float64 and weights.sum().item() == pytest.approx(1.0)


def test_eigenvector_sign_is_positive():
    # eigh's sign is arbitrary (the seed's solver returned the vector negated); the result is non-negative.
    _, vector = principal_eigenpair(PAPER_A.float())
    assert bool((vector >= 0).all())


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_equal_views_give_uniform_weights(n):
    ones = torch.ones(n, n)
    torch.testing.assert_close(asme_weights(ones), torch.full((n,), 1.0 / n, dtype=torch.float64))
    assert consistency_scores(ones) == pytest.approx({"consistency": 1.0, "eigenvalue_ratio": 1.0})


def test_repeated_principal_eigenvalue_treats_members_alike():
    # Two equal groups that disagree, or four views that all disagree: no member is the consensus.
    groups = torch.tensor([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    for similarity in (groups, torch.eye(4)):
        torch.testing.assert_close(asme_weights(similarity), torch.full((4,), 0.25, dtype=torch.float64))


def test_base_sharpens_and_one_is_uniform():
    torch.testing.assert_close(asme_weights(PAPER_A, base=1.0), torch.full((4,), 0.25, dtype=torch.float64))
    assert asme_weights(PAPER_A, base=1000.0)[1] < asme_weights(PAPER_A)[1]


def test_dice_similarity_matrix():
    masks = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True  # 4 px
    masks[1, 0, :2, :] = True  # 8 px, contains mask 0
    # masks 2 and 3 empty
    similarity = dice_similarity_matrix(masks)
    assert similarity.dtype == torch.float64 and similarity.shape == (4, 4)
    expected = torch.tensor(
        [[1.0, 8 / 12, 0, 0], [8 / 12, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(similarity, expected, atol=0, rtol=0)
    torch.testing.assert_close(dice_similarity_matrix(masks.float()), expected, atol=0, rtol=0)


def test_dice_of_empty_masks():
    empty, full = torch.zeros(1, 8, 8), torch.ones(1, 8, 8)
    assert dice_similarity_matrix(torch.stack([empty, empty]))[0, 1].item() == 1.0
    assert dice_similarity_matrix(torch.stack([empty, full]))[0, 1].item() == 0.0


def test_consistency_scores():
    scores = consistency_scores(PAPER_A)
    assert scores["consistency"] == pytest.approx((0.52 + 0.79 + 0.65) * 2 / 12)
    assert scores["eigenvalue_ratio"] == pytest.approx(torch.linalg.eigvalsh(PAPER_A).max().item() / 4)
    assert consistency_scores(torch.ones(1, 1)) == {"consistency": 1.0, "eigenvalue_ratio": 1.0}
    assert consistency_scores(torch.eye(4))["eigenvalue_ratio"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "similarity, base, match",
    [
        (torch.ones(2, 3), 100.0, r"square \[N, N\] matrix, got shape \(2, 3\)"),
        (torch.ones(4), 100.0, r"square"),
        (torch.tensor([[1.0, 0.2], [0.5, 1.0]]), 100.0, r"symmetric.*0\.3"),
        (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), 100.0, r"non-finite"),
        (torch.ones(2, 2), 0.0, r"base must be > 0, got 0\.0"),
        (torch.ones(2, 2), -2.0, r"base must be > 0, got -2\.0"),
    ],
)
def test_asme_weights_errors(similarity, base, match):
    with pytest.raises(ValueError, match=match):
        asme_weights(similarity, base)


def test_dice_errors():
    with pytest.raises(ValueError, match="boolean or 0/1"):
        dice_similarity_matrix(torch.rand(2, 4, 4) + 0.1)
    with pytest.raises(ValueError, match=r"N >= 1"):
        dice_similarity_matrix(torch.zeros(0, 4, 4))
