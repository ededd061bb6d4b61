"""The MONAI Label app: the bundle's infer and train tasks, ASME-consistency active learning, a checked datastore.

``--conf`` options (``monailabel start_server --conf KEY VALUE``):

- ``models``: comma-separated bundle folder names under ``{app}/model/`` (default ``nerveseg``). A folder that
  exists is used as is, with no network access; a missing one is fetched by MONAI Label's bundle download from
  ``zoo_source`` (which needs the network).
- ``zoo_source``: MONAI Label's bundle source for missing models (``monaihosting`` by default); any other value
  (e.g. ``ngc``) with the folder present never touches the network, also in MONAI Label's stock bundle app.
- ``sam2``: ``true`` adds MONAI Label's SAM2 2D/3D tasks, whose weights are downloaded at start (default
  ``false`` here, so that the server starts offline).
- ``reserve_seconds``: how long the ``asme_consistency`` strategy keeps a served image from other annotators
  (default 600).
- ``preload``: MONAI Label's option, load the network at start.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import get_bundle_models, strtobool

from nerveseg.bundle.logs import quiet_unused_gpu_decoder
from nerveseg.scripts.label_app.datastore import IMAGE_EXTENSIONS, SafeLocalDatastore, check_id, image_size_of
from nerveseg.scripts.label_app.strategies import ASMEConsistencyScoring, LeastConsistent
from nerveseg.scripts.label_app.tasks import NervesegInferTask, NervesegTrainTask

__all__ = ["NervesegApp"]

logger = logging.getLogger(__name__)

_UPLOAD = re.compile(r"^tmp[A-Za-z0-9_]{6,}\.[A-Za-z0-9.]+$")  # tempfile names of MONAI Label's /infer uploads


def _version() -> str:
    try:
        return version("nerveseg")
    except PackageNotFoundError:
        return "unknown"


class NervesegApp(MONAILabelApp):
    """MONAI Label app serving the nerveseg bundle(s) under ``{app_dir}/model/``.

    Infer (``/infer/{name}``) and train (``/train/{name}``) tasks per bundle; active-learning strategies
    ``asme_consistency`` (least consistent unlabelled image first), ``random`` and ``first``; the scoring method
    ``asme_consistency``. Requests naming an image that is not in the datastore, or an id that is a path, answer
    4xx instead of reading a file on the server.

    Args:
        app_dir: the app folder (``nerveseg label-app`` lays it out).
        studies: the studies folder (images, ``labels/final/``) or a DICOMweb URL.
        conf: the ``--conf`` options (see the module docstring).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        quiet_unused_gpu_decoder()  # the tasks build the configs' loaders without running their initialize
        self.model_dir = os.path.join(app_dir, "model")
        names = [n.strip() for n in conf.get("models", "nerveseg").split(",") if n.strip()]
        local = {n: os.path.join(self.model_dir, n) for n in names if os.path.isdir(os.path.join(self.model_dir, n))}
        missing = [n for n in names if n not in local]
        if missing:
            logger.info(f"Bundles {missing} are not in {self.model_dir}; asking MONAI Label to download them")
            local.update(get_bundle_models(app_dir, {**conf, "models": ",".join(missing)}))
        self.models = local
        self.sam = strtobool(conf.get("sam2", "false"))
        self.reserve_seconds = int(conf.get("reserve_seconds", "600"))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"nerveseg ({_version()})",
            description="2D ultrasound nerve segmentation (MONAI bundle) with ASME-consistency active learning",
            version=_version(),
        )

    def init_datastore(self) -> Datastore:
        """MONAI Label's datastore choice, with the local one replaced by :class:`SafeLocalDatastore`."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        from monailabel.config import settings

        return SafeLocalDatastore(
            self.studies,
            extensions=[f"*{e}" for e in IMAGE_EXTENSIONS],
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, path in self.models.items():
            task = NervesegInferTask(path, self.conf)
            if task.is_valid():
                infers[name] = task
            else:
                logger.warning(f"No {path}/models/model.pt yet: /infer/{name} appears after the first /train/{name}")
        if self.sam:
            from monailabel.sam2.infer import Sam2InferTask

            infers["sam_2d"] = Sam2InferTask(model_dir=self.model_dir, type=InferType.DEEPGROW, dimension=2)
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        trainers = {name: NervesegTrainTask(path, self.conf) for name, path in self.models.items()}
        return {name: task for name, task in trainers.items() if task.is_valid()}

    def init_strategies(self) -> dict[str, Strategy]:
        return {
            "asme_consistency": LeastConsistent(reserve_seconds=self.reserve_seconds),
            "random": Random(),
            "first": First(),
        }

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        if not self.models:
            return {}
        return {"asme_consistency": ASMEConsistencyScoring(next(iter(self.models.values())))}

    def _add_trained_infers(self) -> None:
        """Register the infer task of a bundle whose first checkpoint was written since the server started."""
        for name, path in self.models.items():
            if name not in self._infers and os.path.isfile(os.path.join(path, "models", "model.pt")):
                task = NervesegInferTask(path, self.conf)
                if task.is_valid():
                    logger.info(f"+++ Adding Inferer:: {name} (first checkpoint found)")
                    self._infers[name] = task

    def info(self) -> dict[str, Any]:
        self._add_trained_infers()
        return super().info()

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's inference, after checking the model and that ``image`` is a datastore id or an upload.

        Raises:
            HTTPException: 404 for an unknown model or image id, 400 for an id that is a path (other than an
                ``/infer`` upload or a session's image), 415 for an upload that is not an image.
        """
        self._add_trained_infers()
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(
                status_code=404, detail=f"No model {model!r}; available: {sorted(self._infers)} (train one first)."
            )
        image = request.get("image")
        if isinstance(image, str):
            store = datastore if datastore else self.datastore()
            path = Path(image)
            upload = path.is_absolute() and str(path.parent) == tempfile.gettempdir() and _UPLOAD.match(path.name)
            if upload and path.is_file():
                image_size_of(path, "uploaded image")
            elif request.get("session") and self._in_sessions(path):  # the image a session uploaded
                image_size_of(path, "session image")
            elif not store.get_image_uri(check_id(image)):
                raise HTTPException(status_code=404, detail=f"Image {image!r} is not in the datastore.")
        return super().infer(request, datastore)

    def _in_sessions(self, path: Path) -> bool:
        sessions = self.sessions()
        if sessions is None or not path.is_absolute():
            return False
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(sessions.store_path))

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """MONAI Label's next sample; an unknown strategy is HTTP 404 (MONAI Label answers 500)."""
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise HTTPException(
                status_code=404, detail=f"No strategy {strategy!r}; choose one of {sorted(self._strategies)}."
            )
        return super().next_sample(request)

    def scoring(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's scoring; an unknown method is HTTP 404 (MONAI Label answers 500)."""
        method = request.get("method")
        if method not in self._scoring_methods:
            raise HTTPException(
                status_code=404, detail=f"No scoring method {method!r}; choose one of {sorted(self._scoring_methods)}."
            )
        return super().scoring(request, datastore)
