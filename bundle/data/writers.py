"""Image writers for the bundle's outputs."""

from __future__ import annotations

import os

from monai.data import PILWriter

from nerveseg.utils.files import atomic_path


class RowMajorPILWriter(PILWriter):
    """``PILWriter`` for arrays indexed ``(H, W)``, written to a temporary name and then renamed.

    The bundle loads images with ``PILReader(reverse_indexing=False)`` so that tensors are ``[C, H, W]`` and
    ``image_size`` reads as (height, width); MONAI's ``PILWriter`` assumes the reversed ``(W, H)`` order by
    default and would write the mask transposed. Writing through a temporary name means an interrupted run
    never leaves a half-written mask behind.
    """

    def write(self, filename: str | os.PathLike, verbose: bool = False, **kwargs) -> None:
        kwargs.setdefault("reverse_indexing", False)
        with atomic_path(filename) as partial:
            super().write(partial, verbose=verbose, **kwargs)
