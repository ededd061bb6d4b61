"""Read any 2D image or mask a user brings (PNG, TIFF, GIF, JPEG, BMP, DICOM, NIfTI, NRRD, MetaImage) as numpy.

Every reader returns a row-major ``(H, W)`` array, as PIL and numpy show the picture, and raises one
:class:`DatasetError` ``"{path}: {problem}"`` per bad file (missing, truncated, a volume, an ambiguous mask), with
the library's own exception chained. Orientation: PIL, DICOM and ITK formats (NRRD, MetaImage) come back row by
row; NIfTI comes back in its stored voxel order (nibabel's ``get_fdata`` order, the affine is not applied), so a
2D array written with nibabel reads back unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from nerveseg.utils.errors import UserInputError

PIL_EXTENSIONS = (".png", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".bmp")
ITK_EXTENSIONS = (".nrrd", ".mha", ".mhd")


class DatasetError(UserInputError):
    """A dataset file or folder that the bundle cannot use; the message names the path and the problem."""


IMAGE_EXTENSIONS = (*PIL_EXTENSIONS, ".dcm", ".nii", ".nii.gz", *ITK_EXTENSIONS)
_PIL_VALUE_MODES = ("1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")  # read as stored, no conversion
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's convert("L")
_LOSSY_EXTENSIONS = (".jpg", ".jpeg")


def extension(path: str | os.PathLike) -> str:
    """The lower-case extension of ``path``, with ``.nii.gz`` as one extension."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def file_stem(path: str | os.PathLike) -> str:
    """The name of ``path`` without its extension (``.nii.gz`` counted as one): ``1_1_mask.tif`` -> ``1_1_mask``."""
    name = Path(path).name
    return name[: len(name) - len(extension(path))]


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn any exception of the reading libraries into one DatasetError naming ``path``."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as err:  # PIL, ITK, nibabel and pydicom raise OSError, RuntimeError, EOFError, ... alike
        raise DatasetError(
            f"{path}: cannot be read ({type(err).__name__}: {err}); check that the file is complete and in "
            "the format its extension says."
        ) from err


def find_file(
    folder: str | os.PathLike, stem: str, extensions: Sequence[str] = IMAGE_EXTENSIONS, prefer: str | None = None
) -> Path | None:
    """The file ``{folder}/{stem}{ext}`` for the first of ``extensions`` that exists (``prefer`` first), else None.

    Each extension is tried as given, in lower and in upper case (``.tif``, ``.TIF``): one ``stat`` per name
    tried, so pairing the files of a large folder does not list the folder once per file.
    """
    folder = Path(folder)
    order = [prefer] if prefer is not None and prefer.lower() in extensions else []
    for suffix in dict.fromkeys(case for ext in (*order, *extensions) for case in (ext, ext.lower(), ext.upper())):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file.")
    return path


def _luminance(array: np.ndarray) -> np.ndarray:
    """``(..., 3|4)`` colour -> luminance, rounded back to integers for integer input."""
    luma = array[..., :3] @ _LUMA
    return np.rint(luma).astype(array.dtype) if np.issubdtype(array.dtype, np.integer) else luma.astype(array.dtype)


def _as_2d(path: Path, array: np.ndarray) -> np.ndarray:
    """Drop singleton axes of a volume down to 2D; a real volume is an error."""
    if array.ndim > 2:
        singleton = tuple(axis for axis, size in enumerate(array.shape) if size == 1)
        array = array.squeeze(axis=singleton[: array.ndim - 2])
    if array.ndim != 2:
        raise DatasetError(f"{path}: is a {array.ndim}D volume of shape {array.shape}; extract a 2D slice first.")
    return array


def _read_pil(path: Path, indices: bool = False) -> np.ndarray:
    """A PIL-format file: luminance for colour images, or (``indices=True``) the raw values of a mask."""
    with _reading(path), Image.open(path) as img:
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            raise DatasetError(f"{path}: has {frames} frames (pages); extract a 2D frame first.")
        img.load()
        if img.mode in _PIL_VALUE_MODES:
            return np.array(img)
        if not indices:
            return np.array(img.convert("L"))
        array = np.array(img)
        if img.mode in ("P", "PA", "LA"):  # palette masks hold class indices: never map them through the palette
            return array if array.ndim == 2 else array[..., 0]
        if img.mode in ("RGB", "RGBA", "RGBX") and (array[..., 1:3] == array[..., :1]).all():
            return array[..., 0]
        raise DatasetError(
            f"{path}: is a coloured {img.mode} mask; save it as grayscale (0/255) or as a palette/class-index PNG."
        )


def _read_itk(path: Path) -> np.ndarray:
    with _reading(path):
        image = itk.imread(str(path))
        array = itk.array_from_image(image)
        return _luminance(array) if image.GetNumberOfComponentsPerPixel() in (3, 4) else array


def _read_nifti(path: Path) -> np.ndarray:
    with _reading(path):
        return np.asanyarray(nib.load(path).dataobj)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image as an ``(H, W)`` array in the file's own dtype (colour files as luminance).

    Args:
        path: a file with one of ``IMAGE_EXTENSIONS`` (case-insensitive). A volume whose extra axes are
            singletons (``(H, W, 1)``) is accepted; DICOM goes through :func:`read_dicom`.

    Raises:
        DatasetError: unknown extension, missing or unreadable file, or a volume of more than one slice.
    """
    path, ext = _existing(path), extension(path)
    if ext in PIL_EXTENSIONS:
        array = _read_pil(path)
    elif ext == ".dcm":
        array = read_dicom(path)[0]
    elif ext in ITK_EXTENSIONS:
        array = _read_itk(path)
    elif ext in (".nii", ".nii.gz"):
        array = _read_nifti(path)
    else:
        raise DatasetError(f"{path}: unknown image extension {ext!r}; use one of {', '.join(IMAGE_EXTENSIONS)}.")
    return _as_2d(path, array)


def _first(value: object) -> object:
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if len(value) else None
    return None if value in (None, "") else value


def read_dicom(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a single-frame DICOM as modality values (rescale applied, MONOCHROME1 inverted so bright = dense).

    Args:
        path: a DICOM file (Part 10, with preamble).

    Returns:
        ``(pixels, metadata)``: ``(H, W)`` pixels, float32 when RescaleSlope/Intercept are not 1/0, else the
        stored integer dtype; ``metadata`` with ``patient_id``, ``patient_sex``, ``patient_age`` (strings or
        None) and ``window`` (``(center, width)`` in the returned pixels' values, or None).

    Raises:
        DatasetError: missing or unreadable file, no pixel data, or several frames.
    """
    path = _existing(path)
    with _reading(path):
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            raise DatasetError(f"{path}: has no pixel data (a DICOM without an image: a report or a structure set?).")
        frames = int(ds.get("NumberOfFrames") or 1)
        if frames > 1:
            raise DatasetError(f"{path}: is a multi-frame DICOM with {frames} frames; extract a 2D frame first.")
        pixels = ds.pixel_array
        pixels = _luminance(pixels) if int(ds.get("SamplesPerPixel") or 1) > 1 else pixels
        slope = float(_first(ds.get("RescaleSlope")) or 1.0)
        intercept = float(_first(ds.get("RescaleIntercept")) or 0.0)
        if (slope, intercept) != (1.0, 0.0):
            pixels = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        window = (float(center), float(width)) if center is not None and width is not None else None
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            low, high = pixels.min().item(), pixels.max().item()
            pixels = (low + high - pixels.astype(np.float64)).astype(pixels.dtype)  # same range, dtype and values
            window = (low + high - window[0], window[1]) if window else None
        tags = {"patient_id": "PatientID", "patient_sex": "PatientSex", "patient_age": "PatientAge"}
        meta = {key: None if _first(ds.get(tag)) is None else str(_first(ds.get(tag))) for key, tag in tags.items()}
    return _as_2d(path, pixels), {**meta, "window": window}


def to_uint8(
    image: np.ndarray,
    window: tuple[float, float] | None = None,
    clahe: bool = False,
    clip_limit: float = 0.01,
    tiles: tuple[int, int] = (8, 8),
) -> np.ndarray:
    """Convert an image to uint8: window or min-max scaling, then optional CLAHE.

    Args:
        image: any-dtype array; uint8 is kept as is unless ``window`` or ``clahe`` is given.
        window: ``(center, width)``: ``[center - width/2, center + width/2]`` maps linearly to ``[0, 255]``,
            clipped. Without it, min-max to ``[0, 255]`` (a constant image gives zeros).
        clahe: contrast-limited adaptive histogram equalisation (2D images only).
        clip_limit: CLAHE histogram clip, a fraction of a tile's pixel count (as scikit-image's ``clip_limit``).
        tiles: CLAHE tiles along ``(H, W)``.
    """
    image = np.asarray(image)
    if window is not None:
        center, width = float(window[0]), float(window[1])
        if width <= 0:
            raise UserInputError(f"window width must be positive, got window={window} (center, width).")
        out = _to_byte((image.astype(np.float64) - (center - width / 2)) / width * 255)
    elif image.dtype != np.uint8:
        low, high = float(image.min()), float(image.max())
        out = _to_byte((image.astype(np.float64) - low) / (high - low) * 255) if high > low else np.zeros(image.shape)
    else:
        out = image
    return _clahe(out.astype(np.uint8), clip_limit, tiles) if clahe else out.astype(np.uint8, copy=False)


def _to_byte(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _clahe(image: np.ndarray, clip_limit: float, tiles: tuple[int, int]) -> np.ndarray:
    """CLAHE of a uint8 ``(H, W)`` image: clipped per-tile histograms, bilinear blend of tile mappings."""
    if image.ndim != 2:
        raise ValueError(f"CLAHE needs a 2D (H, W) image, got shape {image.shape}.")
    height, width = image.shape
    rows, cols = min(tiles[0], height), min(tiles[1], width)
    padded = np.pad(image, ((0, -height % rows), (0, -width % cols)), mode="symmetric")
    tile_h, tile_w = padded.shape[0] // rows, padded.shape[1] // cols
    blocks = padded.reshape(rows, tile_h, cols, tile_w).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    offsets = blocks.astype(np.int64) + 256 * np.arange(rows * cols)[:, None]
    hist = np.bincount(offsets.ravel(), minlength=256 * rows * cols).reshape(rows * cols, 256).astype(np.float64)
    limit = max(clip_limit * tile_h * tile_w, 1.0)
    excess = np.clip(hist - limit, 0, None).sum(axis=1, keepdims=True)
    hist = np.minimum(hist, limit) + excess / 256  # redistribute the clipped counts evenly
    luts = (np.cumsum(hist, axis=1) / (tile_h * tile_w) * 255).reshape(rows, cols, 256)

    def grid(size: int, tile: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(size) + 0.5) / tile - 0.5, 0, count - 1)  # in tile-centre units
        lower = np.floor(position).astype(int)
        return lower, np.minimum(lower + 1, count - 1), position - lower

    y0, y1, wy = (v[:, None] for v in grid(height, tile_h, rows))
    x0, x1, wx = (v[None, :] for v in grid(width, tile_w, cols))
    top = (1 - wx) * luts[y0, x0, image] + wx * luts[y0, x1, image]
    bottom = (1 - wx) * luts[y1, x0, image] + wx * luts[y1, x1, image]
    return _to_byte((1 - wy) * top + wy * bottom)


def check_mask_options(
    target_class: int | None = None, instances: bool = False, threshold: float | None = None
) -> None:
    """Raise a :class:`UserInputError` unless at most one way of choosing a mask's foreground is given."""
    chosen = {"target_class": target_class, "instances": instances or None, "threshold": threshold}
    given = [f"{name}={value}" for name, value in chosen.items() if value is not None]
    if len(given) > 1:
        raise UserInputError(
            f"mask options {', '.join(given)}: choose one way to find a mask's foreground: target_class (one class "
            "of a class-index mask), instances (every nonzero pixel) or threshold / mask_threshold (pixels >= it, "
            "for lossy masks)."
        )


def read_mask(
    path: str | os.PathLike,
    target_class: int | None = None,
    instances: bool = False,
    threshold: float | None = None,
) -> np.ndarray:
    """Read a mask file, or the union of a folder of per-instance masks, as a bool ``(H, W)`` array.

    Args:
        path: a mask file (palette PNGs are read as class indices, not luminance; gray RGB as its gray), or a
            folder of one mask per instance (the 2018 Data Science Bowl layout), all of one size.
        target_class: foreground is ``mask == target_class`` (class-index masks); absent classes give an
            empty mask.
        instances: foreground is any nonzero value (instance label maps).
        threshold: foreground is ``mask >= threshold``, as MONAI's ``AsDiscrete(threshold=...)`` that the training
            pipeline applies to labels: for lossy (JPEG) masks, whose pixels scatter around 0 and 255.

    With none of the three, the mask must hold 0 and at most one other value (0/1, 0/255, bool).

    Raises:
        DatasetError: unreadable file, coloured RGB, a class/instance map without a choice, or (folders) no mask
            files or masks of different sizes.
        UserInputError: more than one of ``target_class``, ``instances`` and ``threshold``.
    """
    check_mask_options(target_class, instances, threshold)
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and extension(p) in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetError(f"{path}: folder holds no mask files (one of {', '.join(IMAGE_EXTENSIONS)}).")
        union = read_mask(files[0], target_class, instances, threshold)
        for file in files[1:]:
            mask = read_mask(file, target_class, instances, threshold)
            if mask.shape != union.shape:
                raise DatasetError(f"{file}: mask of shape {mask.shape}, but {files[0].name} is {union.shape}.")
            union |= mask
        return union
    path = _existing(path)
    raw = _as_2d(path, _read_pil(path, indices=True)) if extension(path) in PIL_EXTENSIONS else read_image(path)
    if target_class is not None:
        return raw == target_class
    if instances:
        return raw != 0
    if threshold is not None:
        nonzero = np.unique(raw[raw != 0])
        if nonzero.size == 1 and nonzero[0] < threshold:  # a binary mask that the threshold would empty
            raise DatasetError(
                f"{path}: is a binary mask of 0 and {nonzero[0].item()}, below mask_threshold {threshold}, so it would "
                "be empty; leave mask_threshold unset for binary masks, or set it to at most their foreground value."
            )
        return raw >= threshold
    values = np.unique(raw)
    if np.count_nonzero(values) > 1:
        shown = values.tolist() if values.size <= 8 else f"[{str(values[:4].tolist())[1:-1]}, ..., {values[-1]}]"
        start = f"{path}: has values {shown}{f' ({values.size} values)' if values.size > 8 else ''}"
        if extension(path) in _LOSSY_EXTENSIONS:
            raise DatasetError(
                f"{start}: a lossy JPEG mask: threshold it, `nerveseg prepare --mask_threshold 128` or the config "
                "key `mask_threshold: 128` for a raw folder (pixels >= 128 are foreground); if it really is a class "
                "or instance map, choose `--target_class` or `--instances` instead."
            )
        raise DatasetError(
            f"{start}: a class or instance map, not a binary mask; choose the class to keep (`nerveseg prepare "
            "--target_class`), take every labelled pixel (`--instances`), or threshold a lossy mask "
            "(`--mask_threshold 128`, or the config key `mask_threshold: 128` for a raw folder)."
        )
    return raw != 0


def check_same_size(
    image: np.ndarray, mask: np.ndarray, image_path: str | os.PathLike, mask_path: str | os.PathLike
) -> None:
    """Raise a :class:`DatasetError` naming the mask when its ``(H, W)`` differs from its image's."""
    check_same_shape(image.shape, mask.shape, image_path, mask_path)


def check_same_shape(
    image_shape: tuple[int, ...],
    mask_shape: tuple[int, ...],
    image_path: str | os.PathLike,
    mask_path: str | os.PathLike,
) -> None:
    """:func:`check_same_size` on recorded ``(H, W)`` shapes, for files that need not be read again."""
    if tuple(image_shape) != tuple(mask_shape):
        raise DatasetError(
            f"{mask_path}: mask size {mask_shape[1]}x{mask_shape[0]} differs from its image {image_path} "
            f"({image_shape[1]}x{image_shape[0]}, width x height)."
        )
