"""Header-only parsing of one DICOM file: the catalogue fields, and a status with its reason.

:func:`parse_file` never raises. It reads the data set up to, but not into, the pixel data (the
Pixel Data element is only located, so its length can be checked against the image's size), and
returns one flat dict with ``status``:

| status | when | reason codes |
|---|---|---|
| ``ok`` | a valid Part 10 file | |
| ``repaired`` | a data set the standard lets a reader complete: no preamble / no File Meta Information (PS3.10 7.1; the meta is rebuilt from the data set, the transfer syntax from its encoding) | ``added_file_meta`` |
| ``quarantined`` | nothing a reader may fix | ``not_dicom`` (no preamble and no parsable data set), ``unreadable_header``, ``no_sop_instance`` (no SOP Class / Instance UID), ``truncated_pixel_data``, ``no_decoder`` (a compressed transfer syntax with no installed decoder), ``unreadable_file`` |

A file whose data set starts with stray bytes is not repaired: skipping them would be a guess,
not a rule of the standard, so it is quarantined as ``not_dicom``.

Two readers, one result. The common file (a preamble, File Meta Information naming a transfer
syntax that is not deflated, a data set encoded as the meta says, no enhanced functional groups)
is read by :func:`_scan` straight from pydicom's element generator with the same options as
``dcmread(force=True, defer_size=1024)``, without building a ``Dataset``: that object is most of
``dcmread``'s cost for a header of a few dozen elements, and a catalogue needs only the raw values.
Everything else (and any file the scan cannot finish) goes through ``dcmread``, which also makes
the repairs. A unit test parses every file both ways and compares the rows.

Identifying attributes (patient id, request id) are returned for linking only; the silver tables
do not keep them.
"""
from __future__ import annotations

import io
import os
import warnings

import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom import uid
from pydicom.dataelem import RawDataElement
from pydicom.filereader import data_element_generator
from pydicom.pixels import get_decoder

PIXEL_DATA = 0x7FE00010
SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"   # (FFFE,E0DD), length 0, little endian
DEFER = 1024   # bytes: larger values are located, not read

FIELDS = ("status", "reason", "repairs", "sop_instance_uid", "series_instance_uid", "study_instance_uid",
          "sop_class_uid", "sop_class_name", "transfer_syntax", "transfer_syntax_name", "modality",
          "body_part", "study_date", "study_time", "series_number", "instance_number", "series_description",
          "study_description", "institution_name", "manufacturer", "model", "station_name", "device_serial",
          "rows", "columns", "frames", "samples_per_pixel", "bits_allocated", "bits_stored",
          "photometric_interpretation", "pixel_spacing_row_mm", "pixel_spacing_col_mm", "slice_thickness_mm",
          "file_size", "pixel_bytes", "expected_pixel_bytes", "has_pixel_data", "burned_in_annotation",
          "patient_id", "accession_number")
SCHEMA = (
    "status STRING, reason STRING, repairs STRING, sop_instance_uid STRING, series_instance_uid STRING, "
    "study_instance_uid STRING, sop_class_uid STRING, sop_class_name STRING, transfer_syntax STRING, "
    "transfer_syntax_name STRING, modality STRING, body_part STRING, study_date STRING, study_time STRING, "
    "series_number INT, instance_number INT, series_description STRING, study_description STRING, "
    "institution_name STRING, manufacturer STRING, model STRING, station_name STRING, device_serial STRING, "
    "rows INT, columns INT, frames INT, samples_per_pixel INT, bits_allocated INT, bits_stored INT, "
    "photometric_interpretation STRING, pixel_spacing_row_mm DOUBLE, pixel_spacing_col_mm DOUBLE, "
    "slice_thickness_mm DOUBLE, file_size BIGINT, pixel_bytes BIGINT, expected_pixel_bytes BIGINT, "
    "has_pixel_data BOOLEAN, burned_in_annotation STRING, patient_id STRING, accession_number STRING")


# every top-level attribute the catalogue reads (a unit test parses each file with and without
# this list and compares the rows, so a field read below but missing here shows up there)
CATALOGUE_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Modality",
    "BodyPartExamined", "StudyDate", "StudyTime", "SeriesNumber", "InstanceNumber", "SeriesDescription",
    "StudyDescription", "InstitutionName", "Manufacturer", "ManufacturerModelName", "StationName",
    "DeviceSerialNumber", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored",
    "PhotometricInterpretation", "PixelSpacing", "ImagerPixelSpacing", "SliceThickness", "BurnedInAnnotation",
    "PatientID", "AccessionNumber")

_ASCII_VRS = {"AE", "AS", "CS", "DA", "DT", "TM", "UI", "IS", "DS"}
_INT_VRS = {"US": 2, "UL": 4, "SS": 2, "SL": 4}


_TAGS: dict[str, int] = {}


def _tag(keyword: str) -> int:
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = tag_for_keyword(keyword)
    return tag


def _raw(ds, keyword: str, encodings):
    """The value of a top-level element decoded straight from its raw bytes (first value of a
    multi-valued one as text): pydicom's full value conversion costs more than reading the whole
    header, and a catalogue needs only the text and numbers."""
    try:
        elem = ds.get_item(_tag(keyword))
        if elem is None:
            return None
        if not isinstance(elem, RawDataElement):           # already converted (e.g. by a repair)
            v = elem.value
            return None if v in (None, "", b"") else v
        raw, vr = elem.value, elem.VR or dictionary_VR(elem.tag)
        if raw is None or len(raw) == 0:
            return None
        if vr in _INT_VRS:
            return int.from_bytes(raw[: _INT_VRS[vr]], "little" if elem.is_little_endian else "big",
                                  signed=vr.startswith("S"))
        text = raw.decode("ascii", "replace") if vr in _ASCII_VRS else decode_bytes(raw, encodings, set())
        text = text.strip(" \x00")
        return text or None
    except Exception:  # noqa: BLE001 - a malformed value is a missing value here
        return None


def _text(ds, keyword: str, encodings) -> str | None:
    v = _raw(ds, keyword, encodings)
    return None if v is None else str(v).strip() or None


def _number(ds, keyword: str, encodings, kind=int):
    v = _raw(ds, keyword, encodings)
    try:
        return kind(float(str(v).split("\\")[0])) if v is not None else None
    except ValueError:
        return None


def _pair(ds, keyword: str, encodings) -> tuple[float, float] | None:
    v = _raw(ds, keyword, encodings)
    parts = str(v).split("\\") if v is not None else []
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


def _spacing(ds, encodings) -> tuple[float | None, float | None]:
    """Pixel spacing (row, column) in mm: Pixel Spacing, else Imager Pixel Spacing, else the
    enhanced multi-frame Pixel Measures functional group."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        pair = _pair(ds, keyword, encodings)
        if pair:
            return pair
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if _tag(groups) not in ds:
            continue
        try:
            v = ds[groups][0].PixelMeasuresSequence[0].PixelSpacing
            return float(v[0]), float(v[1])
        except Exception:  # noqa: BLE001 - not in this functional group
            continue
    return None, None


def _encodings(ds):
    value = _raw(ds, "SpecificCharacterSet", ["iso8859"])
    try:
        return convert_encodings([p.strip() for p in str(value).split("\\")] if value else None)
    except Exception:  # noqa: BLE001 - an unknown character set: read as the default repertoire
        return ["iso8859"]


def _transfer_syntax(ds):
    """The data set's transfer syntax: from its File Meta, else from how pydicom decoded it."""

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        return uid.UID(str(ts)), False
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        return None, True
    return (uid.ImplicitVRLittleEndian if implicit else
            uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian), True


def _pixel_check(path: str, ds, ts, row: dict) -> tuple[int | None, int | None, str | None]:
    """(bytes present, bytes expected, quarantine reason) of the Pixel Data."""
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    size = row["file_size"]
    if ts is not None and ts.is_encapsulated:
        # fragments: complete when the sequence delimiter item closes the file
        with open(path, "rb") as f:
            f.seek(max(0, size - len(SEQ_DELIMITER)))
            whole = f.read() == SEQ_DELIMITER
        if not whole:
            import pydicom

            try:   # a trailing padding element may follow the delimiter: read it all to be sure
                whole = len(pydicom.dcmread(path, force=True).PixelData) > 0
            except Exception:  # noqa: BLE001
                whole = False
        return (size - elem.value_tell if elem.value_tell else None), None, (None if whole else "truncated_pixel_data")
    value = getattr(elem, "value", None)
    present = len(value) if value is not None else max(0, min(elem.length, size - (elem.value_tell or size)))
    rows, cols, bits = row["rows"], row["columns"], row["bits_allocated"]
    if not (rows and cols and bits):
        return present, None, None
    frames, samples = row["frames"] or 1, row["samples_per_pixel"] or 1
    expected = (rows * cols * samples * frames * bits + 7) // 8
    return present, expected, ("truncated_pixel_data" if present < expected else None)


def _read(path: str, defer: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, defer_size=DEFER if defer else None)


def load_dataset(path: str):
    """The whole data set of a file that :func:`parse_file` accepted, with the same repairs: a data
    set without File Meta Information gets one (transfer syntax from its encoding, the SOP Class
    and Instance from the data set), so it can be decoded, de-identified and written again."""
    from pydicom.dataset import FileMetaDataset

    ds = _read(path, defer=False)
    ts, added_meta = _transfer_syntax(ds)
    if added_meta and ts is not None:
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ts
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta = meta
    return ds


def has_preamble(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


_EXPLICIT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    .split())
_FUNCTIONAL_GROUPS = (0x52009229, 0x52009230)   # Shared / Per-frame Functional Groups Sequence


def _not_meta(tag, vr, length) -> bool:
    return tag >> 16 != 0x0002


def scan_tags() -> list[int]:
    """The top-level tags the catalogue reads (the scan skips the others unread)."""
    global _SCAN_TAGS
    if _SCAN_TAGS is None:
        _SCAN_TAGS = [_tag(k) for k in CATALOGUE_KEYWORDS] + [PIXEL_DATA, *_FUNCTIONAL_GROUPS]
    return _SCAN_TAGS


_SCAN_TAGS: list[int] | None = None


class _Header:
    """The top-level elements of a data set by tag, as pydicom's element generator yields them:
    answers the two questions :func:`_parse` asks of a ``Dataset`` (``get_item``, ``in``)."""

    __slots__ = ("elements", "transfer_syntax")

    def __init__(self, elements: dict, transfer_syntax):
        self.elements, self.transfer_syntax = elements, transfer_syntax

    def get_item(self, tag: int, keep_deferred: bool = False):
        return self.elements.get(tag)

    def __contains__(self, tag: int) -> bool:
        return tag in self.elements


HEAD_BYTES = 65536   # the scan reads this much of a file at once: the header of almost every image


def _scan(path: str) -> _Header | None:
    """The common Part 10 file's header without a ``Dataset`` (see the module docstring), or None
    when the file needs ``dcmread``: no preamble, no usable File Meta, a deflated or unknown
    transfer syntax, a data set not encoded as its meta says, enhanced functional groups, or
    anything the generator cannot read to the end.

    The first :data:`HEAD_BYTES` are read at once and scanned in memory; the scan stops at the
    Pixel Data element (only the Data Set Trailing Padding and Digital Signatures may follow it,
    neither catalogued). When the header does not end within those bytes, the file is scanned
    from disk instead."""
    try:
        with open(path, "rb") as f:
            buf = f.read(HEAD_BYTES)
            whole = len(buf) < HEAD_BYTES
            try:
                header = _scan_stream(io.BytesIO(buf), len(buf), whole)
            except Exception:  # noqa: BLE001 - e.g. encapsulated pixel data running past the bytes read
                if whole:
                    raise
                header = None
            if header is None and not whole:
                f.seek(0)
                header = _scan_stream(f, None, True)
    except Exception:  # noqa: BLE001 - whatever the scan cannot read, dcmread reads (or rejects)
        return None
    if header is None or any(t in header.elements for t in _FUNCTIONAL_GROUPS):
        return None
    return header


def _scan_stream(f, buffered: int | None, whole: bool) -> _Header | None:
    """:func:`_scan` over ``f``: the whole file (``whole``) or its first ``buffered`` bytes, in
    which case the result stands only if the Pixel Data and every value read lie within them."""
    head = f.read(132)
    if len(head) < 132 or head[128:] != b"DICM":
        return None
    meta = {e.tag: e for e in data_element_generator(f, False, True, stop_when=_not_meta)}
    raw_ts = meta.get(0x00020010)
    if raw_ts is None or not raw_ts.value:
        return None
    ts = uid.UID(raw_ts.value.decode("ascii").strip(" \x00"))
    if not ts.is_transfer_syntax or ts.is_deflated:
        return None
    implicit, little = ts.is_implicit_VR, ts.is_little_endian
    first = f.read(6)
    if len(first) == 6 and (first[4:6] in _EXPLICIT_VRS) == implicit:
        return None   # the data set is not encoded as its meta says: dcmread's heuristics decide
    f.seek(-len(first), 1)
    elements = {}
    for e in data_element_generator(f, implicit, little, defer_size=DEFER, specific_tags=scan_tags()):
        elements[e.tag] = e
        if e.tag == PIXEL_DATA:
            break
    if not whole:
        pixels = elements.get(PIXEL_DATA)
        if pixels is None or pixels.value_tell > buffered or any(
                isinstance(e, RawDataElement) and e.value is not None and e.length != 0xFFFFFFFF
                and len(e.value) < e.length for e in elements.values()):
            return None
    return _Header(elements, ts)


def parse_file(path: str) -> dict:
    """The catalogue row of one DICOM file (see the module docstring); never raises."""
    row: dict = dict.fromkeys(FIELDS)
    try:
        return _parse(path, row)
    except Exception as exc:  # noqa: BLE001 - last resort: one bad file never stops the job
        return {**row, "status": "quarantined", "reason": "unreadable_file",
                "repairs": f"{type(exc).__name__}: {exc}"[:300]}


def _parse(path: str, row: dict) -> dict:
    row["file_size"] = os.path.getsize(path)
    ds = _scan(path)
    if ds is not None:
        sop_class, sop_instance = (_text(ds, k, ["iso8859"]) for k in ("SOPClassUID", "SOPInstanceUID"))
        if not (sop_class and sop_instance):
            ds = None                                  # dcmread decides what the file is
        else:
            ts, added_meta = ds.transfer_syntax, False
    if ds is None:
        try:
            ds = _read(path)
            sop_class, sop_instance = (_text(ds, k, ["iso8859"]) for k in ("SOPClassUID", "SOPInstanceUID"))
        except Exception:  # noqa: BLE001 - a parse failure is a reason code
            return {**row, "status": "quarantined",
                    "reason": "unreadable_header" if has_preamble(path) else "not_dicom"}
        preamble = getattr(ds, "preamble", None) is not None
        if not (sop_class and sop_instance):
            # without a preamble, force-reading anything "succeeds" into garbage elements
            return {**row, "status": "quarantined", "reason": "no_sop_instance" if preamble else "not_dicom"}
        ts, added_meta = _transfer_syntax(ds)
        if ts is not None and ts.is_deflated:   # deferred offsets would point into the inflated stream
            ds = _read(path, defer=False)
    enc = _encodings(ds)
    spacing = _spacing(ds, enc)
    has_pixels = PIXEL_DATA in ds

    def text(keyword):
        return _text(ds, keyword, enc)

    def number(keyword, kind=int):
        return _number(ds, keyword, enc, kind)

    row.update(
        status="repaired" if added_meta else "ok", repairs="added_file_meta" if added_meta else None,
        sop_instance_uid=sop_instance, sop_class_uid=sop_class, sop_class_name=_uid_name(sop_class),
        series_instance_uid=text("SeriesInstanceUID"), study_instance_uid=text("StudyInstanceUID"),
        transfer_syntax=str(ts) if ts else None, transfer_syntax_name=ts.name if ts else None,
        modality=text("Modality"), body_part=text("BodyPartExamined"),
        study_date=text("StudyDate"), study_time=text("StudyTime"),
        series_number=number("SeriesNumber"), instance_number=number("InstanceNumber"),
        series_description=text("SeriesDescription"), study_description=text("StudyDescription"),
        institution_name=text("InstitutionName"), manufacturer=text("Manufacturer"),
        model=text("ManufacturerModelName"), station_name=text("StationName"),
        device_serial=text("DeviceSerialNumber"), rows=number("Rows"), columns=number("Columns"),
        frames=number("NumberOfFrames") or (1 if has_pixels else 0),
        samples_per_pixel=number("SamplesPerPixel"), bits_allocated=number("BitsAllocated"),
        bits_stored=number("BitsStored"), photometric_interpretation=text("PhotometricInterpretation"),
        pixel_spacing_row_mm=spacing[0], pixel_spacing_col_mm=spacing[1],
        slice_thickness_mm=number("SliceThickness", float), has_pixel_data=has_pixels,
        burned_in_annotation=text("BurnedInAnnotation"), patient_id=text("PatientID"),
        accession_number=text("AccessionNumber"))
    if not row["has_pixel_data"]:
        return row      # a waveform, structured report...: catalogued, nothing to decode
    present, expected, reason = _pixel_check(path, ds, ts, row)
    row.update(pixel_bytes=present, expected_pixel_bytes=expected)
    if reason:
        return {**row, "status": "quarantined", "reason": reason}
    if ts is not None and ts.is_compressed:
        try:
            available = get_decoder(ts).is_available
        except Exception:  # noqa: BLE001 - pydicom has no decoder at all for this syntax
            available = False
        if not available:
            return {**row, "status": "quarantined", "reason": "no_decoder"}
    return row


def _uid_name(value: str) -> str | None:
    name = uid.UID(value).name
    return None if name == value else name
