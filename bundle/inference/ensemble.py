"""The maths of the adaptive single-model ensemble (ASME): Dice similarity of members and eigenvector weights.

Pure functions on tensors, no network; :class:`nerveseg.bundle.inference.inferers.ASMEInferer` applies them per sample.
The members' binary masks are compared pairwise by Dice; the principal eigenvector ``v`` of that similarity
matrix scores how much each member agrees with the consensus, and ``c_i = a**v_i / sum_k a**v_k`` (a softmax of
``v * ln a``) are the ensemble weights (Liao et al., "Ultrasound nerve segmentation", section 3.9).
"""

from __future__ import annotations

import math

import torch

__all__ = ["asme_weights", "consistency_scores", "dice_similarity_matrix", "principal_eigenpair"]

# Relative gap under which the two largest eigenvalues count as one (a repeated principal eigenvalue).
_DEGENERATE_RTOL = 1e-9


def dice_similarity_matrix(masks: torch.Tensor) -> torch.Tensor:
    """Pairwise Dice of ``N`` binary masks.

    ``Dice(i, j) = 2 |M_i & M_j| / (|M_i| + |M_j|)``, exactly 1 when both masks are empty (they agree), so the
    diagonal is 1. No smoothing term: the counts are exact in float64.

    Args:
        masks: ``[N, ...]`` boolean, or 0/1 of any dtype; all dimensions after the first are one mask.

    Returns:
        ``[N, N]`` float64 on the masks' device, symmetric, entries in ``[0, 1]``.

    Raises:
        ValueError: ``masks`` has no member dimension or values other than 0 and 1.
    """
    if masks.ndim < 1 or masks.shape[0] < 1:
        raise ValueError(f"masks must be [N, ...] with N >= 1, got shape {tuple(masks.shape)}.")
    if masks.dtype != torch.bool and bool(((masks != 0) & (masks != 1)).any()):
        raise ValueError("masks must be boolean or 0/1; binarise the predictions (e.g. sigmoid > 0.5) first.")
    flat = masks.reshape(masks.shape[0], -1).to(torch.float64)
    intersection = flat @ flat.T
    sizes = flat.sum(dim=1)
    total = sizes[:, None] + sizes[None, :]
    return torch.where(total > 0, 2 * intersection / total.clamp_min(1), torch.ones_like(total))


def _check_similarity(similarity: torch.Tensor) -> torch.Tensor:
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] < 1:
        raise ValueError(f"similarity must be a square [N, N] matrix, got shape {tuple(similarity.shape)}.")
    similarity = similarity.detach().to(torch.float64)
    if not bool(torch.isfinite(similarity).all()):
        raise ValueError("similarity has non-finite entries.")
    if not torch.allclose(similarity, similarity.T):
        largest = float((similarity - similarity.T).abs().max())
        raise ValueError(f"similarity must be symmetric, got a largest |A - A^T| of {largest:.3g}.")
    return similarity


def principal_eigenpair(similarity: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The largest eigenvalue of a symmetric matrix and its unit eigenvector, with absolute values.

    The sign of an eigenvector is arbitrary (the seed's solver returned it negated); for a non-negative matrix
    the principal one can be taken non-negative (Perron-Frobenius), hence the absolute values. When the largest
    eigenvalue is repeated (e.g. two equally sized groups of views that disagree with each other) the eigenvector
    is not unique and ``eigh`` would pick one at random; the projection of the all-ones vector onto that
    eigenspace is returned instead, which treats the members symmetrically.

    Args:
        similarity: ``[N, N]`` symmetric matrix.

    Returns:
        The eigenvalue and the ``[N]`` float64 eigenvector (unit norm, non-negative), on the matrix's device.

    Raises:
        ValueError: the matrix is not square, not symmetric or not finite.
    """
    similarity = _check_similarity(similarity)
    eigenvalues, eigenvectors = torch.linalg.eigh(similarity)
    largest = eigenvalues[-1]
    top = eigenvalues >= largest - _DEGENERATE_RTOL * max(1.0, float(largest.abs()))
    if int(top.sum()) == 1:
        vector = eigenvectors[:, -1]
    else:
        basis = eigenvectors[:, top]
        ones = torch.ones(similarity.shape[0], dtype=torch.float64, device=similarity.device)
        vector = basis @ (basis.T @ ones)
        vector = vector / vector.norm()
    return float(largest), vector.abs()


def asme_weights(similarity: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """ASME weights ``c_i = base**v_i / sum_k base**v_k`` with ``v`` the principal eigenvector of ``similarity``.

    Args:
        similarity: ``[N, N]`` symmetric Dice similarity matrix (:func:`dice_similarity_matrix`).
        base: the base ``a > 0`` (the seed's 100); 1 gives uniform weights, larger values favour the members
            that agree with the others more sharply.

    Returns:
        ``[N]`` float64 weights, positive, summing to 1.

    Raises:
        ValueError: ``base <= 0``, or the matrix is not square, symmetric and finite.
    """
    if not base > 0:
        raise ValueError(f"base must be > 0, got {base}; the seed used 100, 1 gives uniform weights.")
    _, vector = principal_eigenpair(similarity)
    return torch.softmax(vector * math.log(base), dim=0)


def consistency_scores(similarity: torch.Tensor) -> dict[str, float]:
    """How much the members agree: a free quality signal none of the seeds reported.

    Args:
        similarity: ``[N, N]`` symmetric Dice similarity matrix with unit diagonal.

    Returns:
        ``consistency``: the mean off-diagonal Dice (1.0 for ``N = 1``); ``eigenvalue_ratio``: the principal
        eigenvalue over ``N``, 1 when all members agree and ``1/N`` when none overlaps another.

    Raises:
        ValueError: the matrix is not square, symmetric and finite.
    """
    similarity = _check_similarity(similarity)
    n = similarity.shape[0]
    eigenvalue, _ = principal_eigenpair(similarity)
    if n == 1:
        consistency = 1.0
    else:
        off_diagonal = similarity.sum() - similarity.diagonal().sum()
        consistency = float(off_diagonal) / (n * (n - 1))
    return {"consistency": consistency, "eigenvalue_ratio": eigenvalue / n}
