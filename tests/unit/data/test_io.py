from __future__ import annotations

from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from conftest import SHARED_DATA
from nerveseg.bundle.data.io import (
    IMAGE_EXTENSIONS,
    DatasetError,
    find_file,
    read_dicom,
    read_image,
    read_mask,
    to_uint8,
)
from nerveseg.utils.errors import UserInputError

USGRA = SHARED_DATA / "usgra_seg"
DSB = SHARED_DATA / "dsb2018"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _some(folder: Path, count: int = 6) -> list[Path]:
    files = sorted(folder.glob("*.png"))
    return files[:: max(len(files) // count, 1)][:count]


def _dicom(path: Path, pixels: np.ndarray | None = None, **tags: object) -> Path:
    """A minimal secondary-capture DICOM, with 16-bit monochrome ``pixels`` when given."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientSex, ds.PatientAge = "P-007", "F", "042Y"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    if pydicom.__version__.startswith("2."):  # the label extra's pydicom; 3.x reads the encoding from file_meta
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


# ---- real data ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (USGRA / "masks").is_dir(), reason=f"USGRA-seg not present at {USGRA}")
def test_usgra_images_and_palette_masks():
    for mask_path in _some(USGRA / "masks"):
        image = read_image(USGRA / "images" / mask_path.name)  # some are RGB with coloured overlay pixels
        nerve = read_mask(mask_path, target_class=1)
        assert image.ndim == 2 and image.dtype == np.uint8
        assert nerve.dtype == bool and nerve.shape == image.shape and nerve.any()
        assert not (nerve & read_mask(mask_path, target_class=2)).any()
        assert not read_mask(mask_path, target_class=7).any()  # an absent class is an empty mask
    with pytest.raises(
        DatasetError, match=r"has values \[0, 1, 2\]: a class or instance map, not a binary mask; choose the class"
    ):
        read_mask(USGRA / "masks" / "0000.png")


@pytest.mark.skipif(not (DSB / "labels").is_dir(), reason=f"DSB2018 not present at {DSB}")
def test_dsb2018_instance_labels_equal_binary_masks():
    # Checked on all 500 images: labels > 0 equals masks == 255 exactly; here a handful.
    for label_path in _some(DSB / "labels"):
        union = read_mask(DSB / "masks" / label_path.name)
        assert union.any()
        np.testing.assert_array_equal(read_mask(label_path, instances=True), union)
        assert read_image(DSB / "images" / label_path.name).shape == union.shape
    with pytest.raises(DatasetError, match=r"values \[0, 1, 2, 3, \.\.\., \d+\] \(\d+ values\).*--instances"):
        read_mask(label_path)


# ---- PIL formats -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".TIFF", ".gif", ".bmp"])
def test_lossless_round_trip(tmp_path, suffix):
    array = _rng().integers(0, 256, (12, 17), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / f"a{suffix}")
    out = read_image(tmp_path / f"a{suffix}")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_jpeg_round_trip(tmp_path):
    array = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    Image.fromarray(array).save(tmp_path / "a.jpeg", quality=95)
    out = read_image(tmp_path / "a.jpeg")
    assert out.shape == (24, 32) and np.abs(out.astype(int) - array).max() <= 4


def test_tiff_keeps_16_bit_and_float_values(tmp_path):
    array = _rng().integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), array)
    floats = _rng().normal(size=(9, 11)).astype(np.float32)
    Image.fromarray(floats).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), floats)


def test_rgb_is_read_as_luminance(tmp_path):
    rgb = _rng().integers(0, 256, (10, 14, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    expected = np.array(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), expected)


def test_multi_page_tiff_is_rejected(tmp_path):
    pages = [Image.fromarray(np.full((4, 5), v, np.uint8)) for v in (1, 2)]
    pages[0].save(tmp_path / "a.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(DatasetError, match="a.tif: has 2 frames"):
        read_image(tmp_path / "a.tif")


# ---- NIfTI and ITK formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.nii", "a.nii.gz", "A.NII.GZ"])
def test_nifti_2d_orientation(tmp_path, name):
    array = np.arange(15, dtype=np.int16).reshape(3, 5)  # (H, W), row-major
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / name)
    out = read_image(tmp_path / name)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, array)


def test_nifti_singleton_slice_and_volume(tmp_path):
    array = np.arange(15, dtype=np.float32).reshape(3, 5)
    nib.save(nib.Nifti1Image(array[..., None], np.eye(4)), tmp_path / "slice.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "slice.nii.gz"), array)
    nib.save(nib.Nifti1Image(np.zeros((3, 5, 4), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(DatasetError, match=r"vol.nii.gz: is a 3D volume of shape \(3, 5, 4\); extract a 2D slice"):
        read_image(tmp_path / "vol.nii.gz")


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_orientation_and_volume(tmp_path, suffix):
    array = np.arange(15, dtype=np.uint16).reshape(3, 5)
    itk.imwrite(itk.image_from_array(array), str(tmp_path / f"a{suffix}"))
    np.testing.assert_array_equal(read_image(tmp_path / f"a{suffix}"), array)
    itk.imwrite(itk.image_from_array(array[None]), str(tmp_path / f"slice{suffix}"))  # (1, H, W)
    np.testing.assert_array_equal(read_image(tmp_path / f"slice{suffix}"), array)
    itk.imwrite(itk.image_from_array(np.zeros((2, 3, 5), np.uint8)), str(tmp_path / f"vol{suffix}"))
    with pytest.raises(DatasetError, match=r"is a 3D volume of shape \(2, 3, 5\)"):
        read_image(tmp_path / f"vol{suffix}")


# ---- DICOM --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (PYDICOM_FILES / "CT_small.dcm").is_file(), reason="pydicom's CT_small.dcm not installed")
def test_pydicom_ct_small():
    path = PYDICOM_FILES / "CT_small.dcm"
    pixels, meta = read_dicom(path)
    raw = pydicom.dcmread(path).pixel_array
    assert pixels.shape == (128, 128) and pixels.dtype == np.float32  # RescaleIntercept -1024
    np.testing.assert_array_equal(pixels, raw.astype(np.float32) - 1024)
    assert meta == {"patient_id": "1CT1", "patient_sex": "O", "patient_age": "000Y", "window": None}
    np.testing.assert_array_equal(read_image(path), pixels)


def test_dicom_metadata_window_and_integer_dtype(tmp_path):
    array = _rng().integers(0, 4096, (6, 7))
    pixels, meta = read_dicom(_dicom(tmp_path / "a.dcm", array, WindowCenter=[40, 50], WindowWidth=[400, 500]))
    assert pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, array)
    assert meta == {"patient_id": "P-007", "patient_sex": "F", "patient_age": "042Y", "window": (40.0, 400.0)}
    rescaled, _ = read_dicom(_dicom(tmp_path / "b.dcm", array, RescaleSlope=2, RescaleIntercept=-10))
    assert rescaled.dtype == np.float32
    np.testing.assert_array_equal(rescaled, array * 2.0 - 10)


def test_dicom_monochrome1_is_inverted(tmp_path):
    array = np.array([[0, 100], [1000, 4000]])
    path = _dicom(tmp_path / "m1.dcm", array, PhotometricInterpretation="MONOCHROME1", WindowCenter=1000, WindowWidth=2)
    pixels, meta = read_dicom(path)
    np.testing.assert_array_equal(pixels, 4000 - array)  # bright = dense, same range
    assert pixels.dtype == np.uint16 and meta["window"] == (3000.0, 2.0)


def test_dicom_without_pixel_data_or_with_frames(tmp_path):
    with pytest.raises(DatasetError, match="empty.dcm: has no pixel data"):
        read_dicom(_dicom(tmp_path / "empty.dcm"))
    with pytest.raises(DatasetError, match="multi.dcm: is a multi-frame DICOM with 2 frames"):
        read_dicom(_dicom(tmp_path / "multi.dcm", np.zeros((2, 4, 4)), NumberOfFrames=2))


# ---- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".dcm", ".nii.gz", ".mha"])
def test_truncated_file_names_the_file(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    array = _rng().integers(0, 256, (64, 64), dtype=np.uint8)
    if suffix == ".dcm":
        _dicom(good, array)
    elif suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(array, np.eye(4)), good)
    elif suffix == ".mha":
        itk.imwrite(itk.image_from_array(array), str(good))
    else:
        Image.fromarray(array).save(good)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match=f"bad{suffix}: cannot be read") as info:
        read_image(bad)
    assert info.value.__cause__ is not None


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DatasetError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "a.jpx").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"a.jpx: unknown image extension '.jpx'; use one of .png, .tif") as info:
        read_image(tmp_path / "a.jpx")
    assert all(ext in str(info.value) for ext in IMAGE_EXTENSIONS)


# ---- masks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreground", [1, 255, True])
def test_binary_masks(tmp_path, foreground):
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    Image.fromarray(mask if foreground is True else (mask * foreground).astype(np.uint8)).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == bool
    np.testing.assert_array_equal(out, mask)


def test_palette_mask_reads_indices_not_luminance(tmp_path):
    classes = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    image = Image.fromarray(classes, mode="P")
    image.putpalette([0, 0, 0, 255, 255, 255, 0, 0, 0])  # class 2 drawn black: luminance would lose it
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png", target_class=2), classes == 2)


def test_instance_map_and_rgb_masks(tmp_path):
    labels = np.array([[0, 1, 300], [0, 0, 2]], np.uint16)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.png", instances=True), labels > 0)
    with pytest.raises(DatasetError, match=r"labels.png: has values \[0, 1, 2, 300\]"):
        read_mask(tmp_path / "labels.png")
    gray = np.repeat(((labels > 0) * 255).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "gray.png"), labels > 0)
    gray[0, 0] = (255, 0, 0)
    Image.fromarray(gray).save(tmp_path / "colour.png")
    with pytest.raises(DatasetError, match="colour.png: is a coloured RGB mask"):
        read_mask(tmp_path / "colour.png")


def test_instance_folder_union_and_size_mismatch(tmp_path):
    masks = np.zeros((3, 8, 9), np.uint8)
    masks[0, 1:3, 1:3] = masks[1, 5:7, 2:4] = masks[2, 2:4, 6:9] = 255
    for index, mask in enumerate(masks):
        Image.fromarray(mask).save(tmp_path / f"nucleus_{index}.png")
    np.testing.assert_array_equal(read_mask(tmp_path), masks.any(axis=0))
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(DatasetError, match=r"odd.png: mask of shape \(8, 10\), but nucleus_0.png is \(8, 9\)"):
        read_mask(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: folder holds no mask files"):
        read_mask(tmp_path / "empty")


def _jpeg_mask(path: Path) -> np.ndarray:
    """Save a 0/255 mask as a JPEG, whose pixels then scatter around 0 and 255; return the mask drawn."""
    mask = np.zeros((20, 30), bool)
    mask[5:12, 6:20] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, quality=75)
    assert np.unique(np.asarray(Image.open(path))).size > 2
    return mask


def test_threshold_reads_lossy_jpeg_masks_and_the_error_leads_with_it(tmp_path):
    mask = _jpeg_mask(tmp_path / "m.jpg")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.jpg", threshold=128), mask)
    with pytest.raises(
        DatasetError, match=r"m\.jpg: has values \[0, .*\] \(\d+ values\): a lossy JPEG mask: threshold it"
    ) as info:
        read_mask(tmp_path / "m.jpg")
    assert "`nerveseg prepare --mask_threshold 128` or the config key `mask_threshold: 128`" in str(info.value)


def test_threshold_is_greater_or_equal_as_monai_as_discrete(tmp_path):
    Image.fromarray(np.array([[0, 127, 128, 200]], np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", threshold=128), [[False, False, True, True]])
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", threshold=0.5), [[False, True, True, True]])


def test_class_map_error_names_all_three_choices(tmp_path):
    Image.fromarray(np.array([[0, 1, 2]], np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DatasetError, match=r"m\.png: has values \[0, 1, 2\]: a class or instance map") as info:
        read_mask(tmp_path / "m.png")
    assert all(choice in str(info.value) for choice in ("--target_class", "--instances", "--mask_threshold 128"))
    assert "lossy JPEG" not in str(info.value)


@pytest.mark.parametrize("options", [{"target_class": 1}, {"instances": True}])
def test_threshold_excludes_the_other_choices(tmp_path, options):
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "m.png")
    name = next(iter(options))
    with pytest.raises(UserInputError, match=rf"{name}=.*threshold=128: choose one way"):
        read_mask(tmp_path / "m.png", threshold=128, **options)


def test_instance_folder_passes_the_threshold_on(tmp_path):
    first = _jpeg_mask(tmp_path / "a.jpg")
    second = np.zeros((20, 30), bool)
    second[14:18, 2:9] = True
    Image.fromarray(second.astype(np.uint8) * 255).save(tmp_path / "b.jpg", quality=75)
    np.testing.assert_array_equal(read_mask(tmp_path, threshold=128), first | second)
    with pytest.raises(DatasetError, match="lossy JPEG"):
        read_mask(tmp_path)


def test_find_file_prefers_the_given_extension_and_either_case(tmp_path):
    for name in ("a.png", "a.tif", "b.TIF", "c.npy"):
        (tmp_path / name).write_bytes(b"")
    assert find_file(tmp_path, "a") == tmp_path / "a.png"  # the order of the extensions
    assert find_file(tmp_path, "a", prefer=".tif") == tmp_path / "a.tif"
    assert find_file(tmp_path, "b").name.lower() == "b.tif"  # upper case, on a case-sensitive file system too
    assert find_file(tmp_path, "c") is None and find_file(tmp_path, "missing") is None
    assert find_file(tmp_path, "a", extensions=(".tif",)) == tmp_path / "a.tif"


# ---- to_uint8 and CLAHE -------------------------------------------------------------------------------------


def test_to_uint8_window_and_min_max():
    image = np.array([[-1000.0, -160.0], [40.0, 240.0]])
    np.testing.assert_array_equal(to_uint8(image, window=(40, 400)), [[0, 0], [128, 255]])
    np.testing.assert_array_equal(to_uint8(np.array([[10, 20], [30, 50]], np.int16)), [[0, 64], [128, 255]])
    np.testing.assert_array_equal(to_uint8(np.full((3, 3), 7.5)), np.zeros((3, 3), np.uint8))
    already = _rng().integers(0, 256, (4, 4), dtype=np.uint8)
    assert to_uint8(already) is already
    with pytest.raises(ValueError, match="window width must be positive"):
        to_uint8(image, window=(0, 0))


def test_clahe_spreads_low_contrast_and_keeps_constant():
    low = np.clip(_rng().normal(120, 4, (96, 80)), 0, 255).astype(np.uint8)
    out = to_uint8(low, clahe=True)
    assert out.dtype == np.uint8 and out.shape == low.shape
    assert out.std() > 2 * low.std()
    assert np.corrcoef(out.ravel(), low.ravel())[0, 1] > 0.8  # monotonic-ish: the order of gray levels is kept
    np.testing.assert_array_equal(to_uint8(low, clahe=True), out)
    constant = to_uint8(np.full((37, 50), 90, np.uint8), clahe=True, tiles=(4, 6))
    assert np.unique(constant).size == 1
    assert to_uint8(_rng().random((5, 3)), clahe=True).shape == (5, 3)  # smaller than the 8x8 tiles


def test_a_threshold_above_a_binary_mask_value_is_refused(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(DatasetError, match=r"m.png: is a binary mask of 0 and 1, below mask_threshold 128, so it"):
        read_mask(tmp_path / "m.png", threshold=128)
    assert read_mask(tmp_path / "m.png", threshold=1).sum() == 9
