"""MONAI Label's bundle infer and train tasks, adjusted for this 2D bundle (subclasses, not copies).

:class:`NervesegInferTask` ends the bundle's post-processing in a squeezed ``[H, W]`` uint8 map (1 = nerve) at
the input's size, which MONAI Label writes in the input's format (PNG, TIFF). :class:`NervesegTrainTask` keeps
the bundle's epoch-dependent settings (schedule, SWA, early stopping) in step with the requested epochs and always
gives the validation split data of its own (the bundle's configs have no default data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monai.transforms import CastToTyped, SqueezeDimd
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask

__all__ = ["NervesegInferTask", "NervesegTrainTask"]

logger = logging.getLogger(__name__)


class NervesegInferTask(BundleInferTask):
    """:class:`~monailabel.tasks.infer.bundle.BundleInferTask` whose result is a 2D uint8 label map.

    The bundle's ``postprocessing`` (without ``SaveImaged``, which MONAI Label filters out) gives a ``[1, H, W]``
    0/1 mask at the original size; MONAI Label's ``Restored`` keeps that size; then the channel is squeezed and
    the values cast to uint8, so the written label is ``[H, W]`` with 0 = background and 1 = nerve (the output's
    ``channel_def`` in configs/metadata.json).

    Args:
        path: the bundle folder (``model/{name}`` in the app).
        conf: the app's ``--conf`` options.
        kwargs: passed to :class:`~monailabel.tasks.infer.bundle.BundleInferTask`.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(path, conf, type="segmentation", **kwargs)

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """The bundle's post-processing, MONAI Label's restore, then squeeze to ``[H, W]`` and cast to uint8."""
        return [
            *super().post_transforms(data),
            SqueezeDimd(keys=self.key_pred, dim=0),
            CastToTyped(keys=self.key_pred, dtype=np.uint8),
        ]


class NervesegTrainTask(BundleTrainTask):
    """:class:`~monailabel.tasks.train.bundle.BundleTrainTask` for the bundle's train.json.

    Besides MONAI Label's overrides (data, device, ``train#trainer#max_epochs``), the bundle's ``num_epochs`` is
    set to the requested epochs, so the cosine schedule, SWA window and early stopping span the run that actually
    happens. When the validation split is empty (few labels, or ``val_split`` 0), the training images are used for
    validation, which only selects the checkpoint (train.json alone has no data to fall back to). Training without any
    final label is refused with a message saying so.

    Args:
        path: the bundle folder (``model/{name}`` in the app).
        conf: the app's ``--conf`` options.
        kwargs: passed to :class:`~monailabel.tasks.train.bundle.BundleTrainTask`.
    """

    def _fetch_datalist(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, Any]]:
        datalist = super()._fetch_datalist(request, datastore)
        if not datalist:
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                "No image has a final label yet: save at least one label (PUT /datastore/label) before training.",
            )
        return datalist

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        overrides["num_epochs"] = overrides[self.const.key_train_trainer_max_epochs()]
        if not overrides.get(self.const.key_validate_dataset_data()):
            logger.info("Validation split is empty: validating on the training images (checkpoint selection only)")
            overrides[self.const.key_validate_dataset_data()] = overrides[self.const.key_train_dataset_data()]
        return overrides
