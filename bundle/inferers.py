"""Inferers of the evaluate and inference configs: the fast forward path and the ensembles over flipped views.

:class:`AcceleratedInferer` runs any other inferer with channels-last memory and reduced-precision autocast.
:class:`ASMEInferer` (the adaptive single-model ensemble) and :class:`FlipTTAInferer` combine flipped views.
All are MONAI :class:`~monai.inferers.Inferer` subclasses (never the train inferer) and return float32 mask logits
shaped like one network output, so the bundle's post-processing (``Activationsd(sigmoid)``, thresholding,
inversion of the resize) is unchanged. The ensembles' maths lives in :mod:`nerveseg.bundle.ensemble`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SimpleInferer
from torch import nn

from nerveseg.bundle.ensemble import asme_weights, consistency_scores, dice_similarity_matrix
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY, class_logits_of
from nerveseg.utils.errors import UserInputError

__all__ = [
    "ASMEInferer",
    "AcceleratedInferer",
    "FLIP_VIEWS",
    "FlipTTAInferer",
    "PRECISIONS",
    "SCORE_KEYS",
    "resolve_precision",
]

FLIP_VIEWS: dict[str, tuple[int, ...]] = {"identity": (), "lr": (-1,), "ud": (-2,), "both": (-2, -1)}
"""The flip dimensions of each view of a ``[B, C, H, W]`` image; every view is its own inverse."""

COMBINE_MODES = ("logits", "probabilities")

SCORE_KEYS = ("asme_weights", "asme_consistency", "asme_eigenvalue_ratio")
"""The metadata keys (and ``last_scores`` keys) of the per-sample weights ``[B, N]`` and scores ``[B]``."""


def _flip(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(x, dims) if dims else x


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The compute precisions of :class:`AcceleratedInferer`, besides ``"auto"``."""


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype ``precision`` names on ``device``; ``"auto"`` is bfloat16 where the device computes it natively.

    Native bfloat16 means a CUDA device that reports it (Ampere and newer) or a CPU whose flags in /proc/cpuinfo
    show AVX512-BF16 or AMX; elsewhere (other CPUs, or no /proc/cpuinfo to read) ``"auto"`` is float32, because
    emulated bfloat16 can be slower than float32.

    Raises:
        ValueError: ``precision`` is not ``"auto"`` or a key of :data:`PRECISIONS`.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise UserInputError(f"Unknown precision {precision!r}; choose 'auto' or one of {list(PRECISIONS)}.")
        return PRECISIONS[precision]
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_bf16()
    return torch.bfloat16 if native else torch.float32


@functools.cache
def _cpu_has_bf16() -> bool:
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


class AcceleratedInferer(Inferer):
    """Another inferer's forward passes in channels-last memory order under reduced-precision autocast.

    Each network call of the wrapped ``inferer`` gets its images in channels-last (NHWC) order and runs under
    ``torch.autocast`` at ``precision``; its logits come back as float32 with their metadata. On a 2-core CPU with
    native bfloat16 this ran the EfficientNet and ResNet networks 2.4 to 3.5 times as fast as eager float32, their
    depthwise convolutions gaining most from channels-last order; MONAI's BasicUNet and UNet++ are faster with
    ``channels_last=False`` (figures: ``nerveseg bench``, docs/README.md). The network's 4D
    weights are converted to channels-last on the first call (in place, once; a no-op after). ``precision=
    "float32"`` with ``channels_last=False`` is exactly the wrapped inferer, the bundle's eager path.

    Only the network calls change: an ensemble's maths (masks, Dice, weights) stays in float32. Extra ``networks``
    of :class:`ASMEInferer` are called by it directly, so they run eager.

    Args:
        inferer: the inferer to accelerate; :class:`~monai.inferers.SimpleInferer` by default.
        precision: ``"auto"`` (see :func:`resolve_precision`), ``"bfloat16"``, ``"float16"`` or ``"float32"``.
        channels_last: run the network in channels-last memory order.
    """

    def __init__(self, inferer: Inferer | None = None, precision: str = "auto", channels_last: bool = True) -> None:
        resolve_precision(precision, "cpu")  # the name is checked here, the device at the first call
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.precision = precision
        self.channels_last = bool(channels_last)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run the wrapped inferer on ``inputs`` with ``network``'s forward passes accelerated.

        Args:
            inputs: ``[B, C, H, W]`` images, a MetaTensor in MONAI workflows.
            network: the model, put in channels-last order here when ``channels_last``.
            args: passed to the wrapped inferer.
            kwargs: passed to the wrapped inferer.
        """
        dtype = resolve_precision(self.precision, inputs.device)
        if self.channels_last and isinstance(network, nn.Module):
            _to_channels_last(network)

        def forward(images: torch.Tensor, *network_args: Any, **network_kwargs: Any) -> torch.Tensor:
            if self.channels_last and images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            if dtype == torch.float32:
                return network(images, *network_args, **network_kwargs)
            with torch.autocast(images.device.type, dtype=dtype):
                out = network(images, *network_args, **network_kwargs)
            return _to_float32(out)

        return self.inferer(inputs, forward, *args, **kwargs)


def _to_channels_last(network: nn.Module) -> None:
    weights = [p for p in network.parameters() if p.ndim == 4]
    if not all(w.is_contiguous(memory_format=torch.channels_last) for w in weights):
        network.to(memory_format=torch.channels_last)


def _to_float32(out: Any) -> Any:
    """Float32 copies of a network output's floating tensors (one tensor, or a list/tuple of them), metadata kept."""
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        result = out.float()
        if isinstance(out, MetaTensor) and CLASS_LOGITS_KEY in out.meta:
            result.meta[CLASS_LOGITS_KEY] = out.meta[CLASS_LOGITS_KEY].float()
        return result
    return out


class ASMEInferer(Inferer):
    """Adaptive single-model ensemble over flipped views (ASME, Liao et al. section 3.9), per sample.

    The members are every view of ``views`` through every network (``network`` and then ``networks``, view by
    view within each network, so member ``k * len(views) + j`` is view ``j`` through network ``k``). All views of
    all samples go through each network as one batch of ``B * len(views)`` images, cut into forwards of at most
    ``max_batch`` images; each output is flipped back. Then, for each sample separately, the members' masks
    ``sigmoid(z_i) > threshold`` (all channels together) are compared by Dice, the weights ``w`` come from
    :func:`~nerveseg.bundle.ensemble.asme_weights` (or are ``1/N`` with ``adaptive=False``), and the result is
    ``sum_i w_i z_i`` (``combine="logits"``, the seed's) or ``logit(sum_i w_i sigmoid(z_i))``
    (``combine="probabilities"``). The weighted sum is computed as ``z_0 + sum_i w_i (z_i - z_0)`` (the same
    since the weights sum to 1) so that members that agree exactly come back bit for bit.

    Side channel: for a :class:`~monai.data.MetaTensor` input the result carries the input's metadata plus
    ``asme_weights`` ``[B, N]``, ``asme_consistency`` ``[B]`` (mean off-diagonal Dice) and
    ``asme_eigenvalue_ratio`` ``[B]`` (principal eigenvalue / N) as float32 CPU tensors, which MONAI's
    ``decollate_batch`` splits per sample (the ``[B]`` scores become Python floats). The networks then see
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
        images = _plain(inputs)
        logits, class_logits = [], []
        for net in (network, *self.networks):
            z, k = self._members_of(net, images, as_meta, *args, **kwargs)
            logits.extend(z)
            class_logits.extend(k)
        members = torch.stack(logits)  # [N, B, out_C, H, W]

        with torch.no_grad():
            probabilities = torch.sigmoid(members.detach().to(torch.promote_types(members.dtype, torch.float32)))
            masks = (probabilities > self.threshold).transpose(0, 1)  # [B, N, out_C, H, W]
            similarities = torch.stack([dice_similarity_matrix(m) for m in masks]).cpu()
        weights, consistency, ratio = [], [], []
        for similarity in similarities:
            n = similarity.shape[0]
            weights.append(
                asme_weights(similarity, self.base) if self.adaptive else torch.full((n,), 1.0 / n, dtype=torch.float64)
            )
            scores = consistency_scores(similarity)
            consistency.append(scores["consistency"])
            ratio.append(scores["eigenvalue_ratio"])
        weights = torch.stack(weights)  # [B, N]

        output = self._combine(members, weights, probabilities=self.combine == "probabilities")
        self.last_scores = {
            "asme_weights": weights.float(),
            "asme_consistency": torch.tensor(consistency, dtype=torch.float32),
            "asme_eigenvalue_ratio": torch.tensor(ratio, dtype=torch.float32),
        }
        if not as_meta:
            return output
        result = MetaTensor(output).copy_meta_from(inputs)
        result.meta.update({key: value.clone() for key, value in self.last_scores.items()})
        if any(k is not None for k in class_logits):
            if any(k is None for k in class_logits):
                raise ValueError("Some ensemble members carry meta['class_logits'] and others do not.")
            result.meta[CLASS_LOGITS_KEY] = self._combine(torch.stack(class_logits), weights).detach()
        return result

    def _members_of(
        self, net: Callable[..., Any], images: torch.Tensor, as_meta: bool, *args: Any, **kwargs: Any
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """One network's member logits ``[B, out_C, H, W]`` and class logits ``[B, K]`` (or ``None``) per view."""
        batch = images.shape[0]
        stacked = torch.cat([_flip(images, FLIP_VIEWS[v]) for v in self.views])  # view-major: [V * B, C, H, W]
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
        views = torch.cat(outputs).split(batch)
        members = [_flip(z, FLIP_VIEWS[v]) for z, v in zip(views, self.views, strict=True)]
        if any(k is None for k in class_logits):
            return members, [None] * len(self.views)
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
    """

    def __init__(
        self,
        views: Sequence[str] = ("identity", "lr", "ud", "both"),
        threshold: float = 0.5,
        base: float = 100.0,
        combine: str = "logits",
        max_batch: int = 16,
        networks: Sequence[nn.Module] | None = None,
    ) -> None:
        super().__init__(
            views=views,
            threshold=threshold,
            base=base,
            adaptive=False,
            combine=combine,
            max_batch=max_batch,
            networks=networks,
        )
