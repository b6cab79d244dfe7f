"""PNG thumbnails of DICOM images, as a radiologist would see them in a viewer.

The display pipeline follows DICOM Part 3 C.11 / Part 4 N.2: decode one frame (the middle one of a
multi-frame object) → modality LUT (rescale slope/intercept) → VOI (window centre/width or VOI LUT;
a 0.5–99.5 percentile window when the file gives none) → MONOCHROME1 inverted → 8-bit. PALETTE
COLOR goes through its colour LUT and YBR through a colour-space conversion to RGB. Rows and columns
are kept as stored (row 0 is the top), so the thumbnail has the orientation of the image.

Files that cannot give a picture raise :class:`ThumbnailError` with a reason code; the Spark job
turns that into a quarantine row instead of failing.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, as_pixel_options, convert_color_space
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length

MAX_SIZE = 256
PERCENTILE_WINDOW = (0.5, 99.5)
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
REASONS = ("no_pixel_data", "no_transfer_syntax", "no_decoder", "truncated_pixel_data", "decode_failed",
           "unsupported_photometric", "invalid_image_attributes")


class ThumbnailError(ValueError):
    """A file with no displayable image; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


def thumbnail_png(ds: Dataset, max_size: int = MAX_SIZE) -> bytes:
    """PNG bytes of :func:`render` (mode L or RGB, longest side at most ``max_size``)."""
    buf = io.BytesIO()
    render(ds, max_size).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def render(ds: Dataset, max_size: int = MAX_SIZE) -> Image.Image:
    """The display image of ``ds``'s middle frame as an 8-bit PIL image (L for grey, RGB for colour),
    fitted into ``max_size`` × ``max_size``. Raises :class:`ThumbnailError` and nothing else for
    a bad file."""
    try:
        return _render(ds, max_size)
    except ThumbnailError:
        raise
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:  # e.g. a broken LUT
        raise ThumbnailError("invalid_image_attributes", f"{type(exc).__name__}: {exc}") from exc


def _render(ds: Dataset, max_size: int) -> Image.Image:
    index = _nr_frames(ds) // 2
    arr, photometric = _decode(ds, index)
    if photometric.startswith("MONOCHROME"):
        grey = _voi(_modality(arr, ds, index), ds, index, arr)
        if photometric == "MONOCHROME1":  # low values are white: invert after the VOI
            grey = 1.0 - grey
        img = Image.fromarray(np.round(grey * 255).astype(np.uint8))
    elif photometric == "PALETTE COLOR":
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        img = Image.fromarray(_to_uint8(apply_color_lut(arr, ds)[..., :3], bits))  # drop any alpha
    elif photometric == "RGB" or photometric.startswith("YBR"):
        if photometric.startswith("YBR"):  # partial-range YBR is close enough to full for a thumbnail
            arr = convert_color_space(arr.astype(np.uint8), "YBR_FULL", "RGB")
        img = Image.fromarray(_to_uint8(arr, int(ds.get("BitsStored") or 8)))
    else:
        raise ThumbnailError("unsupported_photometric", photometric)
    return _fit(img, _aspect(ds, index), max_size)


# ---- decoding ----------------------------------------------------------------------------------------

def _nr_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _decode(ds: Dataset, index: int) -> tuple[np.ndarray, str]:
    """Frame ``index`` only (native-endian) and the photometric interpretation after decoding (a
    decoder may have converted YBR to RGB already)."""
    keyword = next((k for k in PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise ThumbnailError("no_pixel_data", f"SOP class {ds.get('SOPClassUID', '?')}")
    tsyntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if not tsyntax:
        raise ThumbnailError("no_transfer_syntax")
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise ThumbnailError("no_decoder", f"transfer syntax {tsyntax.name} is not supported") from None
    if not decoder.is_available:
        raise ThumbnailError("no_decoder", f"no plugin installed for {tsyntax.name}")
    if decoder.is_native:  # checked here so a short file gets a reason, not pydicom's generic error
        expected, present = get_expected_length(ds), len(ds[keyword].value or b"")
        if present < expected:
            raise ThumbnailError("truncated_pixel_data", f"{present} of {expected} bytes")
    try:
        arr, props = decoder.as_array(ds, index=index, **as_pixel_options(ds))
    except Exception as exc:  # a corrupt codestream can surface as anything from the codec plugin
        raise ThumbnailError("decode_failed", f"{type(exc).__name__}: {exc}") from exc
    return arr.astype(arr.dtype.newbyteorder("="), copy=False), str(props["photometric_interpretation"])


# ---- grey scale --------------------------------------------------------------------------------------

def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The functional-group macro ``sequence`` for frame ``index`` of an enhanced multi-frame object,
    per-frame first, then shared; None for classic objects."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups) or []
        if i < len(items) and items[i].get(sequence):
            return items[i].get(sequence)[0]
    return None


def _first(value) -> float:
    """The first of a possibly multi-valued number (Window Centre may list several windows)."""
    return float(value[0] if isinstance(value, (MultiValue, list, tuple)) else value)


def _modality(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    transform = _frame_item(ds, index, "PixelValueTransformationSequence")
    if transform is not None and "RescaleSlope" in transform:
        slope, intercept = _first(transform.RescaleSlope), _first(transform.get("RescaleIntercept", 0))
        return arr.astype(np.float32) * slope + intercept
    return apply_modality_lut(arr, ds).astype(np.float32)


def _voi(values: np.ndarray, ds: Dataset, index: int, stored: np.ndarray) -> np.ndarray:
    """``values`` mapped to 0..1 by the frame's window, else the VOI LUT, else the file's window,
    else a percentile window."""
    window = _frame_item(ds, index, "FrameVOILUTSequence")
    if window is None and ds.get("VOILUTSequence"):
        lut = apply_voi(np.round(values).astype(np.int64), ds)  # the LUT is indexed by integer values
        return lut.astype(np.float32) / (2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    window = window if window is not None else ds
    try:
        centre, width = _first(window.WindowCenter), _first(window.WindowWidth)
    except (AttributeError, IndexError, TypeError, ValueError):
        centre = width = None
    if width is None or not width > 0:
        padding = ds.get("PixelPaddingValue")
        sample = values if padding is None else values[stored != padding]
        lo, hi = np.percentile(sample if sample.size else values, PERCENTILE_WINDOW)
        return np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1)
    function = str(window.get("VOILUTFunction", "LINEAR")).upper()
    if function == "SIGMOID":
        return 1 / (1 + np.exp(-4 * (values - centre) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - centre) / width + 0.5, 0, 1)
    return np.clip((values - (centre - 0.5)) / max(width - 1, 1) + 0.5, 0, 1)  # Part 3 C.11.2.1.2.1


# ---- colour and size ---------------------------------------------------------------------------------

def _to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8 and bits <= 8:
        return arr
    return np.round(arr.astype(np.float32) * (255 / (2 ** bits - 1))).clip(0, 255).astype(np.uint8)


def _aspect(ds: Dataset, index: int) -> float:
    """Row spacing / column spacing (height of a pixel over its width); 1 when unknown."""
    measures = _frame_item(ds, index, "PixelMeasuresSequence")
    spacing = (measures if measures is not None else ds).get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        row, col = float(spacing[0]), float(spacing[1])
        return row / col if row > 0 and col > 0 else 1.0
    except (TypeError, IndexError, ValueError):
        return 1.0


def _fit(img: Image.Image, aspect: float, max_size: int) -> Image.Image:
    """``img`` with square pixels (the more finely sampled axis stretched), then shrunk, never
    enlarged, to fit ``max_size``."""
    width, height = img.width * max(1.0, 1 / aspect), img.height * max(1.0, aspect)
    scale = min(1.0, max_size / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
