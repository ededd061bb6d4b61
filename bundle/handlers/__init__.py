"""Ignite handlers that MONAI does not have, one module each; configs name them as ``nerveseg.bundle.handlers.X``."""

from nerveseg.bundle.handlers.checkpoints import TrainingCheckpoints
from nerveseg.bundle.handlers.postprocessing_search import PostprocessingSearch
from nerveseg.bundle.handlers.progress_log import ProgressLog
from nerveseg.bundle.handlers.report import PerImageReport
from nerveseg.bundle.handlers.swa import StochasticWeightAveraging
from nerveseg.bundle.handlers.tensorboard import LearningRateLogger, ValidationPanel
from nerveseg.bundle.handlers.traceback_log import TracebackLog

__all__ = [
    "LearningRateLogger",
    "PerImageReport",
    "PostprocessingSearch",
    "ProgressLog",
    "StochasticWeightAveraging",
    "TracebackLog",
    "TrainingCheckpoints",
    "ValidationPanel",
]
