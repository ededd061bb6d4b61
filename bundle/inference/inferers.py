"""Inferers of the evaluate and inference configs that ensemble flipped views of each image.

:class:`ASMEInferer` (the adaptive single-model ensemble) and :class:`FlipTTAInferer` combine flipped views;
:class:`~.accelerated.AcceleratedInferer` wraps either to run the network calls on the fast path.
All are MONAI :class:`~monai.inferers.Inferer` subclasses (never the train inferer) and return float32 mask logits
shaped like one network output, so the bundle's post-processing (``Activationsd(sigmoid)``, thresholding,
inversion of the resize) is unchanged. The ensembles' maths lives in :mod:`.ensemble`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from nerveseg.bundle.inference.ensemble import asme_weights, consistency_scores, dice_similarity_matrix
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY, class_logits_of
from nerveseg.utils.errors import UserInputError

__all__ = ["ASMEInferer", "FLIP_VIEWS", "FlipTTAInferer", "SCORE_KEYS"]

FLIP_VIEWS: dict[str, tuple[int, ...]] = {"identity": (), "lr": (-1,), "ud": (-2,), "both": (-2, -1)}
"""The flip dimensions of each view of a ``[B, C, H, W]`` image; every view is its own inverse."""

COMBINE_MODES = ("logits", "probabilities")

SCORE_KEYS = ("asme_weights", "asme_consistency", "asme_eigenvalue_ratio", "asme_views_used")
"""The metadata keys (and ``last_scores`` keys) of the per-sample weights ``[B, N]`` and scores ``[B]``."""


def _flip(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(x, dims) if dims else x


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _rows_into(full: torch.Tensor | None, rows: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor | None:
    """``full`` with ``values`` in its ``rows``: a member computed for some samples only, member 0 elsewhere."""
    if full is None or values is None:
        return values
    return full.index_copy(0, rows.to(full.device), values)


def _check_stop_agreement(stop_agreement: float | None) -> float | None:
    if stop_agreement is None:
        return None
    name = "stop_agreement (asme_stop_agreement in configs/asme.json)"
    fix = "set a mask Dice in (0, 1], e.g. 0.9, or None to compute every view (null in JSON, None on a command line)"
    try:
        value = float(stop_agreement)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(stop_agreement, bool):
        raise UserInputError(f"{name} must be a number, got {stop_agreement!r}; {fix}.")
    if not 0.0 < value <= 1.0:
        raise UserInputError(f"{name} must be in (0, 1], got {stop_agreement}; {fix}.")
    return value


class ASMEInferer(Inferer):
    """Adaptive single-model ensemble over flipped views (ASME, Liao et al. section 3.9), per sample.

    The members are every view of ``views`` through every network (``network`` and then ``networks``, view by
    view within each network, so member ``k * len(views) + j`` is view ``j`` through network ``k``). All views of
    all samples go through each network as one batch of ``B * len(views)`` images, cut into forwards of at most
    ``max_batch`` images; each output is flipped back. Then, for each sample separately, the members' masks
    ``sigmoid(z_i) > threshold`` (all channels together) are compared by Dice, the weights ``w`` come from
    :func:`~.ensemble.asme_weights` (or are ``1/N`` with ``adaptive=False``), and the result is
    ``sum_i w_i z_i`` (``combine="logits"``, the seed's) or ``logit(sum_i w_i sigmoid(z_i))``
    (``combine="probabilities"``). The weighted sum is computed as ``z_0 + sum_i w_i (z_i - z_0)`` (the same
    since the weights sum to 1) so that members that agree exactly come back bit for bit.

    Early stop (``stop_agreement`` set, off by default): the views are computed in two steps instead, the first
    two views (one batch of ``2B`` images, as two are always needed), then the rest together, only for the samples
    whose first two members' masks have Dice ``< stop_agreement``. Two steps, not one view at a time: on a CPU
    each step and each new batch size has a fixed cost, so view-by-view stopping cost more than all four views
    batched. Each view goes through every network, so with extra ``networks`` a sample keeps whole views (stopping
    per network would drop the extra checkpoints first) and any two of its members agreeing stop it. The weights,
    consistency and eigenvalue ratio of a sample are those of its members computed; the others get weight 0. A view
    list of two or fewer is computed in one step either way.

    Side channel: for a :class:`~monai.data.MetaTensor` input the result carries the input's metadata plus
    ``asme_weights`` ``[B, N]`` (0 for members not computed), ``asme_consistency`` ``[B]`` (mean off-diagonal
    Dice), ``asme_eigenvalue_ratio`` ``[B]`` (principal eigenvalue / members computed), all float32, and
    ``asme_views_used`` ``[B]`` (members computed, int64), CPU tensors that MONAI's ``decollate_batch`` splits per
    sample (the ``[B]`` scores become Python numbers). The networks then see
    MetaTensor inputs too; if their outputs carry ``meta["class_logits"]`` ``[B, K]``
    (:mod:`nerveseg.utils.class_logits`), these are combined with the same per-sample weights, always as a weighted
    sum of logits, into the result's ``meta["class_logits"]``. The scores of the last call are also kept in
    :attr:`last_scores` for plain-tensor callers.

    The extra ``networks`` are put in the train/eval mode of ``network`` at each call (evaluators only switch
    the network they were given); they must already be on the inputs' device.

    Args:
        views: names from :data:`FLIP_VIEWS`, distinct, at least one.
        threshold: probability above which a pixel is foreground when masks are compared, in ``(0, 1)``.
        base: the ASME base ``a > 0`` of ``a**v_i`` (the seed's 100); only used with ``adaptive``.
        adaptive: ASME weights; ``False`` gives the plain mean of the members.
        combine: ``"logits"`` or ``"probabilities"``, what the weights average.
        max_batch: the most images per forward pass, at least 1.
        networks: more networks (e.g. other checkpoints) whose views join the ensemble beside ``network``.
        stop_agreement: the mask Dice in ``(0, 1]`` at which two agreeing members stop a sample's remaining views;
            ``None`` computes every view. 1 stops only on identical masks (two empty masks included).

    Raises:
        ValueError: an argument is out of range; the message lists the choices.
    """

    def __init__(
        self,
        views: Sequence[str] = ("identity", "lr", "ud", "both"),
        threshold: float = 0.5,
        base: float = 100.0,
        adaptive: bool = True,
        combine: str = "logits",
        max_batch: int = 16,
        networks: Sequence[nn.Module] | None = None,
        stop_agreement: float | None = None,
    ) -> None:
        if isinstance(views, str):
            views = (views,)
        views = tuple(views)
        if not views:
            raise UserInputError(f"views must name at least one view of {sorted(FLIP_VIEWS)}.")
        unknown = [v for v in views if v not in FLIP_VIEWS]
        if unknown:
            raise UserInputError(f"Unknown views {unknown}; choose from {sorted(FLIP_VIEWS)}.")
        if len(set(views)) != len(views):
            raise UserInputError(f"views must be distinct, got {list(views)}; a repeated view would count twice.")
        if not 0.0 < threshold < 1.0:
            raise UserInputError(f"threshold must be in (0, 1), got {threshold}.")
        if not base > 0:
            raise UserInputError(f"base must be > 0, got {base}; the seed used 100, 1 gives uniform weights.")
        if combine not in COMBINE_MODES:
            raise UserInputError(f"Unknown combine '{combine}'; choose from {list(COMBINE_MODES)}.")
        if max_batch < 1:
            raise UserInputError(f"max_batch must be >= 1, got {max_batch}.")
        networks = tuple(networks or ())
        for extra in networks:
            if not callable(extra):
                raise UserInputError(f"networks must be callables (torch modules), got {type(extra).__name__}.")
        self.views = views
        self.threshold = float(threshold)
        self.base = float(base)
        self.adaptive = bool(adaptive)
        self.combine = combine
        self.max_batch = int(max_batch)
        self.networks = networks
        self.stop_agreement = _check_stop_agreement(stop_agreement)
        self.last_scores: dict[str, torch.Tensor] | None = None

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Ensemble the members' logits for each sample of ``inputs``.

        Args:
            inputs: ``[B, C, H, W]`` images, a MetaTensor in MONAI workflows.
            network: the model; it must return ``[B', out_C, H, W]`` logits for ``[B', C, H, W]`` images.
            args: passed to every network call.
            kwargs: passed to every network call.

        Returns:
            ``[B, out_C, H, W]`` logits; a MetaTensor with the side channel for a MetaTensor ``inputs``.
        """
        if inputs.ndim != 4:
            raise ValueError(f"inputs must be [B, C, H, W], got shape {tuple(inputs.shape)}.")
        if isinstance(network, nn.Module):
            for extra in self.networks:
                if isinstance(extra, nn.Module):
                    extra.train(network.training)
        as_meta = isinstance(inputs, MetaTensor)
        nets = (network, *self.networks)
        logits, class_logits, similarities = self._run_views(nets, _plain(inputs), as_meta, *args, **kwargs)
        num_members = len(self.views) * len(nets)
        members = torch.stack([logits.get(i, logits[0]) for i in range(num_members)])  # [N, B, out_C, H, W]
        weights = torch.zeros(len(similarities), num_members, dtype=torch.float64)
        consistency, ratio = [], []
        for b, similarity in enumerate(similarities):
            n = similarity.shape[0]
            weights[b, self._members_computed(n // len(nets), len(nets))] = (
                asme_weights(similarity, self.base) if self.adaptive else torch.full((n,), 1.0 / n, dtype=torch.float64)
            )
            scores = consistency_scores(similarity)
            consistency.append(scores["consistency"])
            ratio.append(scores["eigenvalue_ratio"])

        output = self._combine(members, weights, probabilities=self.combine == "probabilities")
        self.last_scores = {
            "asme_weights": weights.float(),
            "asme_consistency": torch.tensor(consistency, dtype=torch.float32),
            "asme_eigenvalue_ratio": torch.tensor(ratio, dtype=torch.float32),
            "asme_views_used": torch.tensor([s.shape[0] for s in similarities], dtype=torch.int64),
        }
        if not as_meta:
            return output
        result = MetaTensor(output).copy_meta_from(inputs)
        result.meta.update({key: value.clone() for key, value in self.last_scores.items()})
        member_class_logits = [class_logits.get(i, class_logits[0]) for i in range(num_members)]
        if any(k is not None for k in member_class_logits):
            if any(k is None for k in member_class_logits):
                raise ValueError("Some ensemble members carry meta['class_logits'] and others do not.")
            result.meta[CLASS_LOGITS_KEY] = self._combine(torch.stack(member_class_logits), weights).detach()
        return result

    def _run_views(
        self, nets: Sequence[Callable[..., Any]], images: torch.Tensor, as_meta: bool, *args: Any, **kwargs: Any
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor | None], list[torch.Tensor]]:
        """The members' logits and class logits by member index, and each sample's Dice matrix of its members.

        Member logits are ``[B, out_C, H, W]``; rows of samples that stopped before the member hold member 0's, so
        that ``z_i - z_0`` is 0 there. A sample's ``[n, n]`` matrix is over the ``n`` members it computed.
        """
        num_views, batch = len(self.views), images.shape[0]
        logits: dict[int, torch.Tensor] = {}
        class_logits: dict[int, torch.Tensor | None] = {}
        masks: dict[int, torch.Tensor] = {}
        similarities: list[torch.Tensor | None] = [None] * batch
        running, done = torch.arange(batch), 0
        for step in self._steps():
            rows = None if len(running) == batch else running.to(images.device)
            for k, net in enumerate(nets):
                z, c = self._members_of(net, images if rows is None else images[rows], step, as_meta, *args, **kwargs)
                for i, (z_i, c_i) in enumerate(zip(z, c, strict=True), start=k * num_views + done):
                    logits[i] = z_i if rows is None else _rows_into(logits[0], rows, z_i)
                    class_logits[i] = c_i if rows is None else _rows_into(class_logits[0], rows, c_i)
            done += len(step)
            computed = self._members_computed(done, len(nets))
            with torch.no_grad():
                for i in computed:
                    if i not in masks:
                        z_i = logits[i].detach()
                        masks[i] = torch.sigmoid(z_i.to(torch.promote_types(z_i.dtype, torch.float32))) > self.threshold
                stacked = torch.stack([masks[i] for i in computed]).transpose(0, 1)  # [B, n, out_C, H, W]
                if len(running) < batch:
                    stacked = stacked[running.to(stacked.device)]
                step_similarities = torch.stack([dice_similarity_matrix(m) for m in stacked]).cpu()
            still_running = []
            for b, similarity in zip(running.tolist(), step_similarities, strict=True):
                if done == num_views or self._agree(similarity):
                    similarities[b] = similarity
                else:
                    still_running.append(b)
            if not still_running:
                break
            running = torch.tensor(still_running, dtype=torch.long)
        return logits, class_logits, similarities

    def _members_computed(self, views_done: int, num_nets: int) -> list[int]:
        """The member indices of the first ``views_done`` views through each of ``num_nets`` networks."""
        return [k * len(self.views) + j for k in range(num_nets) for j in range(views_done)]

    def _steps(self) -> list[tuple[str, ...]]:
        """The views computed together: all at once, or with early stop the first two and then the rest."""
        if self.stop_agreement is None or len(self.views) <= 2:
            return [self.views]
        return [self.views[:2], self.views[2:]]

    def _agree(self, similarity: torch.Tensor) -> bool:
        """Whether two members of a sample agree enough to stop: an off-diagonal Dice ``>= stop_agreement``."""
        return bool((similarity.triu(diagonal=1) >= self.stop_agreement).any())

    def _members_of(
        self,
        net: Callable[..., Any],
        images: torch.Tensor,
        views: Sequence[str],
        as_meta: bool,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """One network's member logits ``[B, out_C, H, W]`` and class logits ``[B, K]`` (or ``None``) per view."""
        batch = images.shape[0]
        stacked = torch.cat([_flip(images, FLIP_VIEWS[v]) for v in views])  # view-major: [V * B, C, H, W]
        outputs, class_logits = [], []
        for chunk in torch.split(stacked, self.max_batch):
            out = net(MetaTensor(chunk) if as_meta else chunk, *args, **kwargs)
            if not isinstance(out, torch.Tensor):
                raise ValueError(
                    f"The network returned {type(out).__name__}, not one tensor of logits; put it in eval mode."
                )
            if out.ndim != 4 or out.shape[0] != chunk.shape[0] or out.shape[-2:] != chunk.shape[-2:]:
                raise ValueError(
                    f"The network must return [B, out_C, H, W] logits at the input size {tuple(chunk.shape[-2:])} "
                    f"to flip them back, got shape {tuple(out.shape)} for input {tuple(chunk.shape)}."
                )
            class_logits.append(class_logits_of(out))
            outputs.append(_plain(out))
        per_view = torch.cat(outputs).split(batch)
        members = [_flip(z, FLIP_VIEWS[v]) for z, v in zip(per_view, views, strict=True)]
        if any(k is None for k in class_logits):
            return members, [None] * len(views)
        return members, list(_plain(torch.cat(class_logits)).split(batch))

    @staticmethod
    def _combine(members: torch.Tensor, weights: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
        """``sum_i w_i z_i`` per sample (or the logit of the weighted mean probability).

        Args:
            members: ``[N, B, ...]`` logits.
            weights: ``[B, N]`` weights summing to 1 per sample.
            probabilities: average ``sigmoid(z_i)`` and return its logit.
        """
        dtype = torch.promote_types(members.dtype, torch.float32)
        values = members.to(dtype)
        if probabilities:
            values = torch.sigmoid(values)
        w = weights.to(device=values.device, dtype=dtype).T  # [N, B]
        w = w.reshape(*w.shape, *([1] * (values.ndim - 2)))
        combined = values[0] + (w[1:] * (values[1:] - values[0])).sum(dim=0)
        if probabilities:
            combined = torch.logit(combined, eps=1e-6)
        return combined.to(members.dtype)


class FlipTTAInferer(ASMEInferer):
    """Plain flip test-time augmentation: the mean of the members' logits (or probabilities), uniform weights.

    :class:`ASMEInferer` with ``adaptive=False``, so a config compares the two by swapping the class; the
    consistency scores are still computed and attached.

    Args:
        views: names from :data:`FLIP_VIEWS`, distinct, at least one.
        threshold: probability threshold of the masks behind the consistency scores, in ``(0, 1)``.
        base: accepted for a drop-in swap with :class:`ASMEInferer`; unused.
        combine: ``"logits"`` or ``"probabilities"``, what is averaged.
        max_batch: the most images per forward pass, at least 1.
        networks: more networks whose views join the ensemble beside ``network``.
        stop_agreement: the mask Dice in ``(0, 1]`` at which two agreeing members stop a sample's remaining views
            (the mean is then over the members computed); ``None`` computes every view.
    """

    def __init__(
        self,
        views: Sequence[str] = ("identity", "lr", "ud", "both"),
        threshold: float = 0.5,
        base: float = 100.0,
        combine: str = "logits",
        max_batch: int = 16,
        networks: Sequence[nn.Module] | None = None,
        stop_agreement: float | None = None,
    ) -> None:
        super().__init__(
            views=views,
            threshold=threshold,
            base=base,
            adaptive=False,
            combine=combine,
            max_batch=max_batch,
            networks=networks,
            stop_agreement=stop_agreement,
        )
