"""The traceback of an error that stops an engine, logged unless the error is the user's own mistake."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events

from nerveseg.utils.errors import find_user_error

__all__ = ["TracebackLog"]


class TracebackLog:
    """Log the traceback of an error that stops the engine, as MONAI's ``StatsHandler`` does, except a user error's.

    A :class:`~nerveseg.utils.errors.UserInputError` (a bad file, key or setting) is reported once, as the last line
    a run prints, by :func:`nerveseg.bundle.logs.report_errors`, with its traceback in the run log; a traceback on
    the console above it would bury it. Ignite calls only the first ``EXCEPTION_RAISED`` handler that raises, so
    list this handler first among an engine's handlers: ``StatsHandler``'s own is then never reached. Either way
    the error is raised again.

    Args:
        name: the logger's name; ``None`` is the root logger, as MONAI's ``StatsHandler(name=None)``.
    """

    def __init__(self, name: str | None = None) -> None:
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    def exception_raised(self, _engine: Engine, error: Exception) -> None:
        """Log ``error``'s traceback unless it is (or was caused by) a user error, then raise it again."""
        if find_user_error(error) is None:
            self.logger.exception(f"Exception: {error}")
        raise error
