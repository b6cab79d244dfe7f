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

Identifying attributes (patient id, request id) are returned for linking only; the silver tables
do not keep them.
"""
from __future__ import annotations

import os
import warnings

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
          "patient_id", "accession_number", "request_id")
SCHEMA = (
    "status STRING, reason STRING, repairs STRING, sop_instance_uid STRING, series_instance_uid STRING, "
    "study_instance_uid STRING, sop_class_uid STRING, sop_class_name STRING, transfer_syntax STRING, "
    "transfer_syntax_name STRING, modality STRING, body_part STRING, study_date STRING, study_time STRING, "
    "series_number INT, instance_number INT, series_description STRING, study_description STRING, "
    "institution_name STRING, manufacturer STRING, model STRING, station_name STRING, device_serial STRING, "
    "rows INT, columns INT, frames INT, samples_per_pixel INT, bits_allocated INT, bits_stored INT, "
    "photometric_interpretation STRING, pixel_spacing_row_mm DOUBLE, pixel_spacing_col_mm DOUBLE, "
    "slice_thickness_mm DOUBLE, file_size BIGINT, pixel_bytes BIGINT, expected_pixel_bytes BIGINT, "
    "has_pixel_data BOOLEAN, burned_in_annotation STRING, patient_id STRING, accession_number STRING, "
    "request_id STRING")


def _get(ds, keyword: str):
    try:
        v = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value is a missing value here
        return None
    return None if v is None or v == "" else v


def _text(ds, keyword: str) -> str | None:
    v = _get(ds, keyword)
    s = str(v).strip() if v is not None else ""
    return s or None


def _number(ds, keyword: str, kind=int):
    v = _get(ds, keyword)
    try:
        return kind(v[0] if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else v)
    except (TypeError, ValueError, IndexError):
        return None


def _spacing(ds) -> tuple[float | None, float | None]:
    """Pixel spacing (row, column) in mm: Pixel Spacing, else Imager Pixel Spacing, else the
    enhanced multi-frame Pixel Measures functional group."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        v = _get(ds, keyword)
        if v is not None and len(v) == 2:
            return float(v[0]), float(v[1])
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            v = ds[groups][0].PixelMeasuresSequence[0].PixelSpacing
            return float(v[0]), float(v[1])
        except Exception:  # noqa: BLE001 - not in this functional group
            continue
    return None, None


def _request_id(ds) -> str | None:
    try:
        for item in ds.get("RequestAttributesSequence") or []:
            if item.get("RequestedProcedureID"):
                return str(item.RequestedProcedureID).strip()
    except Exception:  # noqa: BLE001
        pass
    return None


def _transfer_syntax(ds):
    """The data set's transfer syntax: from its File Meta, else from how pydicom decoded it."""
    from pydicom import uid

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        return uid.UID(str(ts)), False
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        return None, True
    return (uid.ImplicitVRLittleEndian if implicit else
            uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian), True


def _pixel_check(path: str, ds, ts) -> tuple[int | None, int | None, str | None]:
    """(bytes present, bytes expected, quarantine reason) of the Pixel Data."""
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    size = os.path.getsize(path)
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
    rows, cols, bits = _number(ds, "Rows"), _number(ds, "Columns"), _number(ds, "BitsAllocated")
    if not (rows and cols and bits):
        return present, None, None
    frames, samples = _number(ds, "NumberOfFrames") or 1, _number(ds, "SamplesPerPixel") or 1
    expected = (rows * cols * samples * frames * bits + 7) // 8
    return present, expected, ("truncated_pixel_data" if present < expected else None)


def _read(path: str, defer: bool = True):
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, defer_size=DEFER if defer else None)


def has_preamble(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def parse_file(path: str) -> dict:
    """The catalogue row of one DICOM file (see the module docstring); never raises."""
    row: dict = dict.fromkeys(FIELDS)
    try:
        return _parse(path, row)
    except Exception as exc:  # noqa: BLE001 - last resort: one bad file never stops the job
        return {**row, "status": "quarantined", "reason": "unreadable_file",
                "repairs": f"{type(exc).__name__}: {exc}"[:300]}


def _parse(path: str, row: dict) -> dict:
    from pydicom.pixels import get_decoder

    row["file_size"] = os.path.getsize(path)
    preamble = has_preamble(path)
    try:
        ds = _read(path)
        sop_class, sop_instance = _text(ds, "SOPClassUID"), _text(ds, "SOPInstanceUID")
    except Exception:  # noqa: BLE001 - a parse failure is a reason code
        return {**row, "status": "quarantined", "reason": "unreadable_header" if preamble else "not_dicom"}
    if not (sop_class and sop_instance):
        # without a preamble, force-reading anything "succeeds" into garbage elements
        return {**row, "status": "quarantined", "reason": "no_sop_instance" if preamble else "not_dicom"}
    ts, added_meta = _transfer_syntax(ds)
    if ts is not None and ts.is_deflated:   # deferred offsets would point into the inflated stream
        ds = _read(path, defer=False)
    spacing = _spacing(ds)
    row.update(
        status="repaired" if added_meta else "ok", repairs="added_file_meta" if added_meta else None,
        sop_instance_uid=sop_instance, sop_class_uid=sop_class, sop_class_name=_uid_name(sop_class),
        series_instance_uid=_text(ds, "SeriesInstanceUID"), study_instance_uid=_text(ds, "StudyInstanceUID"),
        transfer_syntax=str(ts) if ts else None, transfer_syntax_name=ts.name if ts else None,
        modality=_text(ds, "Modality"), body_part=_text(ds, "BodyPartExamined"),
        study_date=_text(ds, "StudyDate"), study_time=_text(ds, "StudyTime"),
        series_number=_number(ds, "SeriesNumber"), instance_number=_number(ds, "InstanceNumber"),
        series_description=_text(ds, "SeriesDescription"), study_description=_text(ds, "StudyDescription"),
        institution_name=_text(ds, "InstitutionName"), manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"), station_name=_text(ds, "StationName"),
        device_serial=_text(ds, "DeviceSerialNumber"), rows=_number(ds, "Rows"), columns=_number(ds, "Columns"),
        frames=_number(ds, "NumberOfFrames") or (1 if PIXEL_DATA in ds else 0),
        samples_per_pixel=_number(ds, "SamplesPerPixel"), bits_allocated=_number(ds, "BitsAllocated"),
        bits_stored=_number(ds, "BitsStored"), photometric_interpretation=_text(ds, "PhotometricInterpretation"),
        pixel_spacing_row_mm=spacing[0], pixel_spacing_col_mm=spacing[1],
        slice_thickness_mm=_number(ds, "SliceThickness", float), has_pixel_data=PIXEL_DATA in ds,
        burned_in_annotation=_text(ds, "BurnedInAnnotation"), patient_id=_text(ds, "PatientID"),
        accession_number=_text(ds, "AccessionNumber"), request_id=_request_id(ds))
    if not row["has_pixel_data"]:
        return row      # a waveform, structured report...: catalogued, nothing to decode
    present, expected, reason = _pixel_check(path, ds, ts)
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
    from pydicom.uid import UID

    name = UID(value).name
    return None if name == value else name
