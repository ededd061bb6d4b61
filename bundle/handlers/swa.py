"""Stochastic weight averaging as an Ignite handler, with BatchNorm recalibration and one validation of the mean."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer
from torch.optim.swa_utils import SWALR, AveragedModel

from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import save_state_dict

if TYPE_CHECKING:
    from monai.engines import Evaluator

__all__ = ["StochasticWeightAveraging"]

logger = logging.getLogger(__name__)


class StochasticWeightAveraging:
    """Keep an equal-weight mean of the network's weights over the last epochs (SWA, Izmailov et al. 2018).

    The weights at the end of epochs ``swa_start, swa_start + swa_freq, ...`` (1-based, up to ``num_epochs``)
    are averaged. Only parameters are averaged; BatchNorm statistics of a weight average are not the average of
    the statistics, so when training completes they are recomputed with one pass over ``bn_loader``. Then the
    averaged weights are saved to ``output_path`` and, if a ``validator`` is given, evaluated once.

    ``swa_start=None`` switches SWA off: nothing is built and :meth:`attach` registers nothing, so a config can
    keep the handler and switch it on with one scalar.

    Learning rate: with ``swa_lr``, a :class:`torch.optim.swa_utils.SWALR` takes over the learning rate after
    epoch ``swa_start``. It anneals from the rate the run had reached to ``swa_lr`` over ``anneal_epochs``
    epochs (1: epoch ``swa_start + 1`` already trains at ``swa_lr``) and then holds it. It sets the rate when
    each epoch starts, from its own last value, so an epoch-level scheduler (MONAI's ``LrScheduleHandler``) may
    keep stepping but no longer has any effect; its ``print_lr`` then prints values that are not used. An
    iteration-level scheduler must be stopped after ``swa_start``. Without ``swa_lr`` the bundle's scheduler
    keeps control (with cosine annealing, SWA averages the weights of the low-rate tail).

    Validation: the averaged weights (with their recalibrated statistics) are loaded into ``network`` for one
    ``validator.run(final_epoch)``, then the trained weights are put back and the validator's ``best_metric``,
    ``best_metric_epoch`` and ``metrics`` restored, so the best-epoch bookkeeping stays what it was. The
    validator's handlers (stats, TensorBoard) record the run at the final epoch; keep checkpoint savers off the
    validator (the bundle's :class:`~nerveseg.bundle.handlers.TrainingCheckpoints` sits on the trainer), or one
    would save the averaged weights as the best epoch's. The result is ``swa_metric`` and one log line comparing
    it with the best epoch.

    Resuming: :meth:`state_dict` holds the running mean, the averaged epochs and the SWALR state; the bundle
    passes this handler to ``TrainingCheckpoints`` as one of its ``state_objects``.

    Distributed training: the mean is kept on every rank (the weights are the same on all ranks). Every rank
    recalibrates BatchNorm and runs the validator (MONAI's metrics gather across ranks); only rank 0 writes
    ``output_path``. Give every rank the same ``bn_loader`` (no ``DistributedSampler``) so the statistics agree.

    Args:
        network: the trained network; ``DataParallel``/``DistributedDataParallel`` wrappers are unwrapped.
        swa_start: the first averaged epoch (1-based, ``1 <= swa_start < num_epochs``); ``None`` turns SWA off.
        num_epochs: the number of training epochs (the trainer's ``max_epochs``).
        swa_freq: average every ``swa_freq``-th epoch from ``swa_start`` on.
        swa_lr: the constant learning rate of the SWA phase; ``None`` leaves the learning rate alone.
        optimizer: the trainer's optimizer; required with ``swa_lr``.
        anneal_epochs: epochs over which SWALR anneals (cosine) to ``swa_lr``.
        bn_loader: batches of dictionaries, e.g. the training ``DataLoader``, for the BatchNorm pass; ``None``
            keeps the statistics of the last averaged epoch's network.
        image_key: the key of the network input in each ``bn_loader`` batch.
        output_path: where to save the averaged state dict (keys without ``module.``), e.g.
            ``models/model_swa.pt``, through a temporary name in the same folder; ``None`` saves nothing.
        validator: a MONAI evaluator of ``network`` with a key metric, run once on the averaged weights.
        device: where to keep the averaged copy (e.g. ``"cpu"`` to spare GPU memory); default: the network's.

    Raises:
        ValueError: an argument is out of range; the message names the config key.
    """

    def __init__(
        self,
        network: nn.Module,
        swa_start: int | None,
        num_epochs: int,
        swa_freq: int = 1,
        swa_lr: float | None = None,
        optimizer: Optimizer | None = None,
        anneal_epochs: int = 1,
        bn_loader: Iterable | None = None,
        image_key: str = "image",
        output_path: str | os.PathLike | None = None,
        validator: Evaluator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
        if swa_start is not None:
            if swa_start < 1:
                raise UserInputError(
                    f"swa_start ({swa_start}) must be >= 1: epochs count from 1 and the weights at the end of "
                    "epoch swa_start are the first averaged; use null to turn SWA off."
                )
            if swa_start >= num_epochs:
                raise UserInputError(
                    f"swa_start ({swa_start}) must be less than num_epochs ({num_epochs}) "
                    "so that at least two epochs are averaged."
                )
        if swa_freq < 1:
            raise UserInputError(f"swa_freq must be >= 1, got {swa_freq}.")
        if swa_start is not None and swa_start + swa_freq > num_epochs:
            raise UserInputError(
                f"swa_freq ({swa_freq}) leaves only epoch {swa_start} to average between swa_start ({swa_start}) "
                f"and num_epochs ({num_epochs}); lower swa_freq or swa_start."
            )
        if swa_lr is not None and swa_lr <= 0:
            raise UserInputError(f"swa_lr must be > 0, got {swa_lr}; use null to keep the trainer's learning rate.")
        if swa_lr is not None and optimizer is None:
            raise ValueError("swa_lr is set but optimizer is not: SWALR needs the trainer's optimizer.")
        if anneal_epochs < 1:
            raise UserInputError(
                f"anneal_epochs must be >= 1, got {anneal_epochs}; 1 switches to swa_lr right after swa_start."
            )
        if validator is not None and getattr(getattr(validator, "state", None), "key_metric_name", None) is None:
            raise ValueError("validator has no key metric (key_val_metric) to evaluate the averaged weights with.")

        self.swa_start = swa_start
        self.num_epochs = num_epochs
        self.swa_freq = swa_freq
        self.swa_lr = swa_lr
        self.bn_loader = bn_loader
        self.image_key = image_key
        self.output_path = None if output_path is None else Path(output_path)
        self.validator = validator
        self.swa_metric: float | None = None
        self._network = (
            network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network
        )
        self._averaged_epochs: list[int] = []
        self._averaged: AveragedModel | None = None
        self._swalr: SWALR | None = None
        if swa_start is None:
            return
        self._averaged = AveragedModel(self._network, device=device, use_buffers=False)
        if swa_lr is not None:
            # Built now, not at swa_start, so that it wraps optimizer.step before training; with
            # anneal_epochs >= 1 its initial step leaves the learning rate unchanged.
            self._swalr = SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=anneal_epochs)

    @property
    def enabled(self) -> bool:
        """Whether SWA is on (``swa_start`` is not ``None``)."""
        return self._averaged is not None

    @property
    def averaged_model(self) -> AveragedModel | None:
        """The running mean (its ``module`` is a copy of the network); ``None`` when SWA is off."""
        return self._averaged

    @property
    def averaged_epochs(self) -> list[int]:
        """The epochs whose final weights are in the mean so far."""
        return list(self._averaged_epochs)

    def attach(self, engine: Engine) -> None:
        """Register the handler on the trainer; does nothing when SWA is off.

        Args:
            engine: the trainer.
        """
        if not self.enabled:
            return
        engine.add_event_handler(Events.STARTED, self._check_max_epochs)
        if self._swalr is not None:
            engine.add_event_handler(Events.EPOCH_STARTED, self._step_lr)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._finish)

    def state_dict(self) -> dict[str, Any]:
        """The running mean (with ``n_averaged``), the averaged epochs and the SWALR state; empty when SWA is off."""
        if self._averaged is None:
            return {}
        return {
            "averaged_model": self._averaged.state_dict(),
            "averaged_epochs": list(self._averaged_epochs),
            "swalr": None if self._swalr is None else self._swalr.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, to resume SWA where a run stopped.

        Args:
            state: the output of :meth:`state_dict`.
        """
        if not state:
            return
        if self._averaged is None:
            raise UserInputError(
                "The state holds an SWA running mean but swa_start is null (SWA off) in this run; resume with the "
                "interrupted run's swa_start (stack configs/training/swa.json)."
            )
        if (state["swalr"] is None) != (self._swalr is None):
            raise UserInputError(
                "swa_lr must be set in both or neither of the saved run and this run; resume with the interrupted "
                "run's swa_lr."
            )
        self._averaged.load_state_dict(state["averaged_model"])
        self._averaged_epochs = list(state["averaged_epochs"])
        if self._swalr is not None:
            self._swalr.load_state_dict(state["swalr"])

    def _check_max_epochs(self, engine: Engine) -> None:
        if engine.state.max_epochs != self.num_epochs:
            logger.warning(
                f"SWA: the trainer runs {engine.state.max_epochs} epochs but SWA is set up for num_epochs "
                f"({self.num_epochs}); no epoch after {self.num_epochs} is averaged."
            )

    def _step_lr(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch <= self.swa_start:
            return
        if epoch > self.swa_start + 1:
            # Undo whatever an epoch-level scheduler set since, so SWALR anneals from its own last value.
            for group, lr in zip(self._swalr.optimizer.param_groups, self._swalr.get_last_lr(), strict=True):
                group["lr"] = lr
        self._swalr.step()
        logger.info(f"SWA: learning rate {self._swalr.get_last_lr()[0]:.3g} for epoch {epoch}")

    def _update(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch < self.swa_start or epoch > self.num_epochs or (epoch - self.swa_start) % self.swa_freq:
            return
        self._averaged.update_parameters(self._network)
        self._averaged_epochs.append(epoch)

    def _finish(self, engine: Engine) -> None:
        if not self._averaged_epochs:
            logger.warning(f"SWA: training stopped before epoch {self.swa_start}; nothing was averaged.")
            return
        self._recalibrate_batchnorm()
        if self.output_path is not None and idist.get_rank() == 0:
            save_state_dict(self._averaged.module.state_dict(), self.output_path)
            logger.info(f"SWA: saved the mean of {len(self._averaged_epochs)} epochs to {self.output_path}")
        if self.validator is not None:
            self._validate(engine.state.epoch)

    @torch.no_grad()
    def _recalibrate_batchnorm(self) -> None:
        model = self._averaged.module
        layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        if not layers:
            return
        if self.bn_loader is None:
            logger.warning(
                f"SWA: no bn_loader, so BatchNorm keeps the statistics of epoch {self._averaged_epochs[-1]}'s "
                "weights, not of their mean."
            )
            return
        momenta = {layer: layer.momentum for layer in layers}
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative mean over the batches, not an exponential one
        was_training = model.training
        device = next(model.parameters()).device
        model.train()
        try:
            for batch in self.bn_loader:
                if self.image_key not in batch:
                    raise UserInputError(
                        f"bn_loader batch has no key '{self.image_key}' (keys: {sorted(batch)}); set image_key."
                    )
                model(batch[self.image_key].to(device))
        finally:
            for layer, momentum in momenta.items():
                layer.momentum = momentum
            model.train(was_training)

    def _validate(self, epoch: int) -> None:
        validator, network = self.validator, self._network
        state = validator.state
        name = state.key_metric_name
        best, best_epoch, metrics = state.best_metric, state.best_metric_epoch, dict(state.metrics)
        original = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
        was_training = network.training
        network.load_state_dict(self._averaged.module.state_dict())
        try:
            validator.run(epoch)
            self.swa_metric = float(state.metrics[name])
        finally:
            network.load_state_dict(original)
            network.train(was_training)
            state.best_metric, state.best_metric_epoch, state.metrics = best, best_epoch, metrics
        epochs = self._averaged_epochs
        span = f"{epochs[0]}-{epochs[-1]} ({len(epochs)} snapshots, every {self.swa_freq})"
        previous = f"best epoch {best_epoch} {best:.4f}" if best_epoch != -1 else "no earlier validation"
        logger.info(f"SWA over epochs {span}: val {name} {self.swa_metric:.4f} vs {previous}")
