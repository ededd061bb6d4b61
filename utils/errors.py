"""The bundle's errors about what the user gave it: a file, a folder or a setting it cannot use.

Such an error's message names the bad value and the fix, so it is what the user should read last: the hook that
``nerveseg.bundle.logs.report_errors`` installs (configs' ``initialize``, the ``nerveseg`` command) prints it as the
last line, even when MONAI has wrapped it in its own ``RuntimeError``, and keeps the traceback in the run's log.
"""

from __future__ import annotations

__all__ = ["UserInputError", "find_user_error"]


class UserInputError(ValueError):
    """A file, folder or setting the user gave that the bundle cannot use; the message says which and what to do.

    A ``ValueError``, so callers that catch ``ValueError`` keep working. ``nerveseg.bundle.data.io.DatasetError``
    (bad data) derives from it; raise it directly for a bad setting.
    """


def find_user_error(error: BaseException | None) -> UserInputError | None:
    """The outermost :class:`UserInputError` in ``error``'s chain (``__cause__``, else ``__context__``), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ if error.__cause__ is not None else error.__context__
    return None
