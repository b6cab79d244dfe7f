"""DICOM thumbnails (spark_jobs.imaging.thumbnails) on the shared pydicom test files and the simulator's
images: the picture a viewer would show (window, inversion, palette, middle frame), the right way up,
and a reason code for the files that have none."""
from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, MPEG2MPML

from ingest.simulator import media
from ingest.simulator.media import ImagingExam, PatientIdentity
from lakehouse.settings import REPO_ROOT  # == Path(__file__).parents[2]
from spark_jobs.imaging.thumbnails import ThumbnailError, render, thumbnail_png

DICOM_DIR = REPO_ROOT.parent / "shared" / "data" / "dicom"
pytestmark = pytest.mark.skipif(
    not DICOM_DIR.is_dir(), reason=f"shared DICOM test data not found at {DICOM_DIR} (see shared/data/README.md)"
)

# file → (mode, sign of the correlation with the stored values: -1 for MONOCHROME1)
IMAGES = {
    "CT_small.dcm": ("L", 1),
    "MR_small.dcm": ("L", 1),
    "MR_enhanced_multiframe.dcm": ("L", 1),
    "CR_small_16x16.dcm": ("L", -1),
    "CR_RG3_jpeg2000.dcm": ("L", -1),
    "NM_jpeg_lossless.dcm": ("L", 1),
    "US_palette_OBXXXX1A.dcm": ("RGB", None),
    "problematic/deflated_image_dfl.dcm": ("L", 1),
    "problematic/MR_small_bigendian.dcm": ("L", 1),
}
GREY = [name for name, (mode, _) in IMAGES.items() if mode == "L"]


def _read(name: str) -> Dataset:
    return pydicom.dcmread(DICOM_DIR / name)


def _png(ds: Dataset, max_size: int = 256) -> Image.Image:
    img = Image.open(io.BytesIO(thumbnail_png(ds, max_size)))
    img.load()
    return img


def _stored(ds: Dataset, index: int | None = None) -> np.ndarray:
    """The modality-LUT'd values of a frame, decoded independently of the code under test."""
    arr = pixel_array(ds, index=index)
    return apply_modality_lut(arr.astype(arr.dtype.newbyteorder("=")), ds).astype(np.float32)


def _r(thumb: Image.Image, values: np.ndarray) -> float:
    """Pearson r between a thumbnail and ``values`` plainly resized to the thumbnail's size."""
    ref = np.asarray(Image.fromarray(values).resize(thumb.size, Image.Resampling.BILINEAR))
    return float(np.corrcoef(np.asarray(thumb, dtype=float).ravel(), ref.ravel())[0, 1])


def _assert_picture(img: Image.Image, mode: str, max_size: int = 256) -> None:
    arr = np.asarray(img)
    assert img.mode == mode
    assert max(img.size) <= max_size
    assert arr.std() > 5 and len(np.unique(arr)) > 2, "blank thumbnail"


# ---- every shared image --------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGES)
def test_thumbnail_is_a_png_picture_of_the_expected_mode(name):
    _assert_picture(_png(_read(name)), IMAGES[name][0])


@pytest.mark.parametrize("name", GREY)
def test_grey_thumbnail_keeps_orientation_and_inverts_monochrome1(name):
    ds = _read(name)
    frames = int(ds.get("NumberOfFrames") or 1)
    values = _stored(ds, frames // 2 if frames > 1 else None)
    thumb, sign = _png(ds), IMAGES[name][1]
    r = sign * _r(thumb, values)
    assert r > 0.9, f"thumbnail does not follow the image (signed r={r:.3f})"
    assert sign * _r(thumb, values[::-1]) < r, "thumbnail is flipped upside down"
    assert sign * _r(thumb, values[:, ::-1]) < r, "thumbnail is mirrored"


def test_large_jpeg2000_radiograph_is_shrunk_to_fit():
    img = _png(_read("CR_RG3_jpeg2000.dcm"), max_size=64)
    assert img.size == (64, 64)
    _assert_picture(img, "L", 64)


def test_tall_lossless_jpeg_keeps_its_aspect_ratio():
    img = _png(_read("NM_jpeg_lossless.dcm"))  # 1024 rows × 256 columns
    assert img.size == (64, 256)


def test_palette_colour_is_applied():
    rgb = np.asarray(_png(_read("US_palette_OBXXXX1A.dcm")), dtype=int)
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 30).sum() > 100, "no colour: palette not applied"


def test_multiframe_shows_the_middle_frame():
    ds = _read("MR_enhanced_multiframe.dcm")
    thumb = _png(ds)
    r = [_r(thumb, _stored(ds, i)) for i in range(int(ds.NumberOfFrames))]
    assert int(np.argmax(r)) == 5 and r[5] > r[0]


# ---- windowing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("centre,width", [(40, 400), ([40, 300], [400, 1500])])
def test_ct_window_makes_below_black_and_above_white(centre, width):
    ds = _read("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth = centre, width  # the first window counts when several are given
    hu = _stored(ds)
    img = np.asarray(render(ds, max_size=128))  # 128×128: no resampling
    assert (img[hu < 40 - 200] == 0).all() and (img[hu > 40 + 200] == 255).all()
    inside = (hu > -100) & (hu < 180)
    assert inside.any() and (img[inside] > 0).all() and (img[inside] < 255).all()


def _window_item(centre: float, width: float) -> Dataset:
    voi, group = Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = centre, width
    group.FrameVOILUTSequence = [voi]
    return group


def test_enhanced_multiframe_uses_the_functional_group_window():
    ds = _read("MR_enhanced_multiframe.dcm")
    values = _stored(ds, 5)
    assert (values > 60).any() and (values < 40).any()
    ds.SharedFunctionalGroupsSequence = [_window_item(5000, 20)]  # everything below: black
    assert np.asarray(render(ds)).max() == 0
    ds.PerFrameFunctionalGroupsSequence = [_window_item(50 if i == 5 else 5000, 20) for i in range(10)]
    img = np.asarray(render(ds))  # the middle frame's own window wins over the shared one
    assert (img[values > 60] == 255).all() and (img[values < 40] == 0).all()


def test_voi_lut_sequence_is_applied():
    ds = _read("MR_small.dcm")
    values = _stored(ds)
    threshold = int(np.median(values))
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = [0] * threshold + [65535] * (4096 - threshold)  # a step: black / white
    ds.VOILUTSequence = [lut]
    img = np.asarray(render(ds))
    assert (img[values < threshold] == 0).all() and (img[values >= threshold] == 255).all()


def test_pixel_spacing_makes_pixels_square():
    ds = _read("MR_small.dcm")
    ds.PixelSpacing = [0.625, 0.3125]  # rows twice as far apart as columns
    assert render(ds).size == (64, 128)


# ---- files without a picture -------------------------------------------------------------------------

@pytest.mark.parametrize("name,reason", [
    ("problematic/MR_truncated.dcm", "truncated_pixel_data"),
    ("ECG_12lead_waveform.dcm", "no_pixel_data"),
])
def test_bad_files_raise_a_reason(name, reason):
    with pytest.raises(ThumbnailError) as err:
        thumbnail_png(_read(name))
    assert err.value.reason == reason and isinstance(err.value, ValueError)


def test_transfer_syntax_without_decoder_raises_no_decoder():
    ds = _read("CR_RG3_jpeg2000.dcm")
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    with pytest.raises(ThumbnailError, match="no_decoder"):
        render(ds)


def test_corrupt_codestream_raises_decode_failed():
    ds = _read("CR_RG3_jpeg2000.dcm")
    ds.PixelData = encapsulate([ds.PixelData[16:400]])  # a fragment without its start
    with pytest.raises(ThumbnailError) as err:
        render(ds)
    assert err.value.reason == "decode_failed"


def test_raw_data_set_renders_once_recovered_and_not_before():
    data = (DICOM_DIR / "problematic" / "no_meta_stray_byte.dcm").read_bytes()
    ds = read_dataset(DicomBytesIO(data[1:]), is_implicit_VR=False, is_little_endian=True)
    with pytest.raises(ThumbnailError, match="no_transfer_syntax"):
        render(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    _assert_picture(render(ds), "L")


# ---- the simulator's images --------------------------------------------------------------------------

PATIENT = PatientIdentity("R000123", "欧阳秀英", "350921195803120027", "2", dt.date(1958, 3, 12))


def _exam(modality, body_part, defect=None):
    return ImagingExam("A20251223001", "REQ-IMG-1", "H350921001", "屏南县医院", modality, body_part,
                       dt.datetime(2025, 12, 23, 9, 41, 5), defect)


@pytest.mark.parametrize("modality,body_part", [
    ("DX", "CHEST"), ("CR", "CHEST"), ("CT", "CHEST"), ("CT", "HEAD"), ("MR", "HEAD"), ("US", "ABDOMEN"),
])
def test_simulated_images_render(tmp_path, modality, body_part):
    for seed in (11, 12):
        for path in media.write_imaging_exam(tmp_path / str(seed), PATIENT, _exam(modality, body_part), seed):
            ds = pydicom.dcmread(path)
            mode = "RGB" if ds.PhotometricInterpretation == "RGB" else "L"
            _assert_picture(_png(ds), mode)


def test_simulated_truncated_image_raises_truncated_pixel_data(tmp_path):
    path = media.write_imaging_exam(tmp_path, PATIENT, _exam("CT", "CHEST", "truncated_dicom"), seed=11)[-1]
    with pytest.raises(ThumbnailError) as err:
        render(pydicom.dcmread(path))
    assert err.value.reason == "truncated_pixel_data"
