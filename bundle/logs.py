"""Run logs: a file beside the TensorBoard events, and a user's mistake told in the last line a run prints.

A run keeps its console output in a log file (:class:`RunLog`, open from the config's ``initialize`` to its
``finalize``). When a run stops on an error about the user's input (a
:class:`~nerveseg.utils.errors.UserInputError`, such as a ``DatasetError`` naming a bad file), the error's own
message is printed last (:func:`report_errors`), and the traceback, which would bury it (MONAI wraps an error
raised while it instantiates a component in ``RuntimeError: Failed to instantiate ...``), goes to the log file
only; ``NERVESEG_TRACEBACK=1`` prints it too.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from types import TracebackType

from nerveseg.utils.errors import find_user_error

__all__ = ["LOG_FORMAT", "TRACEBACK_SWITCH", "RunLog", "quiet_unused_gpu_decoder", "report_errors"]

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
TRACEBACK_SWITCH = "NERVESEG_TRACEBACK"  # set to 1: print the traceback of a user error too
_RUN_LOG = "nerveseg_run_log"  # marks the handlers of open run logs, which also receive an uncaught error


class RunLog:
    """A run's log file: every record of the root logger copied to ``path`` from :meth:`open` to :meth:`close`.

    MONAI's ``LogfileHandler`` keeps one engine's records while it runs; a bundle run's log spans the whole workflow
    (start-up checks, training and validation), so configs open it first in ``initialize`` and close it in
    ``finalize``; :func:`nerveseg.bundle.runs.run_workflow` also closes it when a run in this process fails. In a
    distributed run only rank 0 writes, so the processes do not interleave one file.

    Args:
        path: the log file, appended to; its folder is created.
        level: the lowest level copied; the root logger is lowered to it while the log is open.
    """

    def __init__(self, path: str | os.PathLike, level: int = logging.INFO) -> None:
        self.path = Path(path).resolve()
        self.level = level
        self.handler: logging.FileHandler | None = None
        self._root_level: int | None = None

    def open(self) -> RunLog:
        """Start copying records into the file; opening an open log changes nothing."""
        if self.handler is not None:
            return self
        import torch.distributed  # here: the command line reports errors without torch's import

        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.path)
        handler.setLevel(self.level)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(handler, _RUN_LOG, True)
        root = logging.getLogger()
        root.addHandler(handler)
        self._root_level = root.level
        if root.getEffectiveLevel() > self.level:
            root.setLevel(self.level)
        self.handler = handler
        return self

    def close(self) -> None:
        """Stop copying records, close the file and give the root logger its level back; closing twice is a no-op."""
        if self.handler is None:
            return
        root = logging.getLogger()
        root.removeHandler(self.handler)
        self.handler.close()
        self.handler = None
        if self._root_level is not None:
            root.setLevel(self._root_level)


def report_errors() -> None:
    """Install a ``sys.excepthook`` that ends an uncaught error's output with the bundle's own message.

    The hook copies the traceback to the open run logs (:class:`RunLog`). When a
    :class:`~nerveseg.utils.errors.UserInputError` is in the error's chain (``__cause__``, ``__context__``), it
    prints where the traceback is and then ``{ErrorType}: {message}`` as the last line: what is wrong, which file or
    key, and what to do; with ``NERVESEG_TRACEBACK=1`` in the environment the traceback is printed above them. Any
    other error prints its traceback as Python does. Configs call it from ``initialize``, the ``nerveseg`` command
    line before it runs a command; installing it again changes nothing. An engine that stops on a user error logs
    no traceback of it when :class:`~nerveseg.bundle.handlers.TracebackLog` is its first handler, as in the configs.
    """
    previous = sys.excepthook
    if getattr(previous, _RUN_LOG, False):
        return

    def hook(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        user_error = find_user_error(error)
        message = f"{type(user_error).__name__}: {user_error}" if user_error is not None else None
        record = logging.LogRecord(
            "nerveseg", logging.ERROR, __file__, 0, message or "uncaught error", None, (kind, error, traceback)
        )
        logs = []
        for handler in logging.getLogger().handlers:
            if getattr(handler, _RUN_LOG, False):
                handler.handle(record)
                logs.append(handler.baseFilename)
        if user_error is None or os.environ.get(TRACEBACK_SWITCH, "0") not in ("", "0"):
            previous(kind, error, traceback)
            if user_error is not None and user_error is not error:  # unwrapped, Python's last line already says it
                print(f"\n{message}", file=sys.stderr, flush=True)
            return
        where = f"the traceback is in {', '.join(logs)}; " if logs else ""
        print(f"\nStopped: {where}{TRACEBACK_SWITCH}=1 prints it here.\n{message}", file=sys.stderr, flush=True)

    setattr(hook, _RUN_LOG, True)
    sys.excepthook = hook


def quiet_unused_gpu_decoder() -> None:
    """Hide MONAI's notices that its GPU DICOM decoder (nvImageCodec) is not there.

    MONAI 1.6's ``LoadImage`` builds every reader it knows, and its nvImageCodec DICOM reader then logs and warns
    that the decoder is missing and pydicom's own decoders are used: three lines at the start of every run on a CPU
    (or without the optional package), about a decoder the bundle never asks for. Configs call this in
    ``initialize``, the MONAI Label app when it starts; it holds for the rest of the process. Other warnings and that
    module's errors still show.
    """
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", "NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register")
