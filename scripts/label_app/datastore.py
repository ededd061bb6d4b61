"""A MONAI Label local datastore that refuses bad ids and files with a 4xx answer before anything is written.

MONAI Label 0.8.5's :class:`~monailabel.datastore.local.LocalDatastore` joins ids into paths unchecked (an id
``../../x`` writes outside the studies folder), stores any uploaded bytes as an image or label, and its
"not found" errors become HTTP 500. Here every id and label tag must be a plain file name, an image must be a 2D
image the bundle can read, and a label must be a 2D image of its image's size; otherwise the request fails with
400 (bad id), 404 (unknown image), 409 (image id taken), 415 (not an image) or 422 (label of the wrong size),
and the datastore is left as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "SafeLocalDatastore", "check_id", "image_size_of"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
"""The 2D formats the bundle reads (PIL): the only ones this datastore stores and lists."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_id(value: str, what: str = "image id") -> str:
    """``value`` if it is a plain file name (letters, digits, ``_ . -``, no ``..``), else HTTP 400."""
    if not isinstance(value, str) or not _ID.match(value) or ".." in value:
        raise HTTPException(
            status_code=400,
            detail=f"Invalid {what} {value!r}: use letters, digits, '_', '.' and '-' only (no path, no '..').",
        )
    return value


def image_size_of(path: str | Path, what: str = "image") -> tuple[int, int]:
    """``(height, width)`` of a 2D image file the bundle can read, else HTTP 415 naming the problem."""
    suffix = "".join(Path(path).suffixes[-1:]).lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise HTTPException(
            status_code=415, detail=f"The {what} must be one of {', '.join(IMAGE_EXTENSIONS)}; got {suffix or 'none'}."
        )
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise HTTPException(status_code=415, detail=f"The {what} is not a readable image: {error}") from error
    if frames != 1:
        raise HTTPException(status_code=415, detail=f"The {what} has {frames} frames; upload one 2D frame per id.")
    return height, width


class SafeLocalDatastore(LocalDatastore):
    """:class:`~monailabel.datastore.local.LocalDatastore` with ids, images and labels checked before writing."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Store a new 2D image under ``image_id`` (or its file name); 400/409/415 leave the datastore unchanged."""
        image_id = image_id or Path(image_filename).name.split(".")[0]
        check_id(image_id)
        if image_id in self._datastore.objects:
            raise HTTPException(
                status_code=409, detail=f"Image id {image_id!r} exists; remove it first or choose another id."
            )
        image_size_of(image_filename)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Store a label (0/1 or 0/255 mask) for a known image; 400/404/415/422 leave the datastore unchanged."""
        check_id(image_id)
        check_id(label_tag, "label tag")
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"Image {image_id!r} is not in the datastore.")
        expected = image_size_of(self.get_image_uri(image_id))
        size = image_size_of(label_filename, "label")
        if size != expected:
            raise HTTPException(
                status_code=422,
                detail=f"The label is {size[0]}x{size[1]} (HxW) but image {image_id!r} is {expected[0]}x{expected[1]}; "
                "save the mask at the image's size.",
            )
        return super().save_label(image_id, label_filename, label_tag, label_info)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        """Update the info of a known image; an unknown id is HTTP 404 (MONAI Label answers 500)."""
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"Image {image_id!r} is not in the datastore.")
        super().update_image_info(image_id, info)

    def remove_image(self, image_id: str) -> None:
        """Remove a known image and its labels; an unknown id is HTTP 404."""
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"Image {image_id!r} is not in the datastore.")
        super().remove_image(image_id)
