"""DICOM and ECG file connector: delivered imaging / ECG files → landing copy + a file manifest in
bronze (``bronze.dicom__files``, ``bronze.ecg__files``).

What the sources deliver (``docs/sources.md``):

- ``dicom``: ``<YYYY-MM-DD>/<org_code>/<accession_no>/<n>.dcm``, one DICOM Part 10 file per image;
- ``ecg``: ``<YYYY-MM-DD>/<org_code>/<request_id>.dcm`` (DICOM 12-lead ECG waveform) or
  ``<request_id>.hea`` + ``<request_id>.dat`` (WFDB, format 16).

This step only lands the files and checks them lightly: the header parses, and the pixel /
waveform / signal bytes are all there. Decoding the images and signals is left to later jobs,
which read the landing copies listed here. One row per DICOM file, one row per ECG recording (a
WFDB recording is its ``.hea`` and ``.dat`` together); a file that fails a check goes to
``quarantine.<source>__files`` with its reason code instead:

| reason | meaning |
|---|---|
| ``not_dicom`` | no DICOM preamble, and no usable data set when read without one |
| ``unreadable_header`` | DICOM preamble present but the data set does not parse / WFDB header does not parse |
| ``truncated_dicom`` | Pixel Data shorter than Rows×Columns×Samples×Bits/8×Frames |
| ``not_ecg_waveform`` | a DICOM file in the ECG delivery without a Waveform Sequence |
| ``truncated_ecg`` | Waveform Data shorter than channels×samples×bytes, or a ``.dat`` shorter than the header declares |
| ``missing_signal_file`` | a WFDB header whose signal file was not delivered |
| ``missing_header`` | a WFDB signal file without its header |
| ``unsupported_file`` | any other file in the ECG delivery |

Bronze key: ``(rel_path, sha256)``, the same file identity as ``ops.landed_files``. A SOP Instance
UID is not a safe key at this layer: a broken file may not have one, and a modality may resend
the same instance (with a corrected header), which silver has to resolve with the evidence at
hand. For a WFDB recording ``rel_path`` is the ``.hea`` and ``sha256`` hashes the two files'
hashes (``rel_paths`` / ``landing_paths`` list both files).

Patient identifiers (``patient_id``, ``name``, ``id_card_no``) are kept in bronze (a restricted
layer); quarantine payloads are masked by :mod:`lakehouse.quarantine`.

Crash safety: one batch per run and source, whose id hashes the files it read; bronze, quarantine
and the batch record are MERGEs, and the files are recorded in ``ops.landed_files`` last, so a
rerun after a crash re-reads the same files into the same batch and changes nothing twice.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import warnings
from collections import defaultdict
from pathlib import Path

from ingest.connectors import common
from lakehouse import landing, ops

KINDS = {"dicom": "dicom", "ecg": "ecg"}   # kind → source name in the drop zone
ENTITY = "files"
KEYS = ("rel_path", "sha256")

DICOM_SCHEMA = (
    "rel_path STRING, delivery_day STRING, sha256 STRING, size_bytes BIGINT, landing_path STRING, "
    "org_code STRING, has_file_meta BOOLEAN, transfer_syntax STRING, sop_class_uid STRING, "
    "sop_instance_uid STRING, study_instance_uid STRING, series_instance_uid STRING, "
    "accession_number STRING, request_id STRING, modality STRING, body_part STRING, "
    "study_date STRING, study_time STRING, institution_name STRING, patient_id STRING, name STRING, "
    "id_card_no STRING, sex STRING, birth_date STRING, rows INT, columns INT, frames INT, "
    "samples_per_pixel INT, bits_allocated INT, photometric_interpretation STRING, "
    "pixel_bytes BIGINT, expected_pixel_bytes BIGINT, is_deleted INT, __reason STRING"
)
ECG_SCHEMA = (
    "rel_path STRING, delivery_day STRING, sha256 STRING, size_bytes BIGINT, landing_path STRING, "
    "rel_paths ARRAY<STRING>, landing_paths ARRAY<STRING>, format STRING, request_id STRING, "
    "org_code STRING, sop_instance_uid STRING, n_leads INT, lead_names ARRAY<STRING>, "
    "sampling_rate DOUBLE, n_samples BIGINT, duration_s DOUBLE, signal_bytes BIGINT, "
    "expected_signal_bytes BIGINT, recorded_at STRING, institution_name STRING, patient_id STRING, "
    "name STRING, id_card_no STRING, sex STRING, birth_date STRING, is_deleted INT, __reason STRING"
)

# SCP-ECG lead codes (DICOM CID 3001, coding scheme SCPECG) → lead names
SCPECG_LEADS = {
    "5.6.3-9-1": "I", "5.6.3-9-2": "II", "5.6.3-9-61": "III", "5.6.3-9-62": "aVR",
    "5.6.3-9-63": "aVL", "5.6.3-9-64": "aVF", "5.6.3-9-3": "V1", "5.6.3-9-4": "V2",
    "5.6.3-9-5": "V3", "5.6.3-9-6": "V4", "5.6.3-9-7": "V5", "5.6.3-9-8": "V6",
}
# bytes per sample of the WFDB signal formats we can size-check
WFDB_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3,
                         "311": 4 / 3, "24": 3, "32": 4}
PIXEL_DATA = 0x7FE00010
DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
_DEFER = 4096  # bytes: larger values are not read, only located (size checks need no pixels)


for _source in KINDS.values():
    common.bronze_table(_source, ENTITY, KEYS)
    common.quarantine_table(_source, ENTITY)


# ---- light checks, one file (or one WFDB pair) at a time; never raise -----------------------------

def _str(ds, keyword: str) -> str | None:
    try:
        v = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value is a missing value here
        return None
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _int(ds, keyword: str) -> int | None:
    try:
        v = ds.get(keyword)
        return int(v) if v not in (None, "") else None
    except Exception:  # noqa: BLE001
        return None


def _has_preamble(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def _read_dicom(path: Path, defer: bool):
    """(dataset or None, has_file_meta, reason or None)."""
    import pydicom

    preamble = _has_preamble(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=_DEFER if defer else None)
            sop_class = _str(ds, "SOPClassUID")
    except Exception:  # noqa: BLE001 - any parse failure is a reason code, not a crash
        return None, preamble, "unreadable_header" if preamble else "not_dicom"
    if not sop_class:
        # without a preamble, force-reading anything "succeeds" into garbage elements
        return None, preamble, "unreadable_header" if preamble else "not_dicom"
    return ds, preamble and "TransferSyntaxUID" in getattr(ds, "file_meta", {}), None


def _identity(ds) -> dict:
    sex = _str(ds, "PatientSex")
    id_card = None
    try:
        for item in ds.get("OtherPatientIDsSequence") or []:
            if item.get("PatientID"):
                id_card = str(item.PatientID).strip()
                break
    except Exception:  # noqa: BLE001
        pass
    if id_card is None:
        other = _str(ds, "OtherPatientIDs")
        id_card = other.split("\\")[0] if other else None
    request_id = None
    try:
        for item in ds.get("RequestAttributesSequence") or []:
            if item.get("RequestedProcedureID"):
                request_id = str(item.RequestedProcedureID).strip()
                break
    except Exception:  # noqa: BLE001
        pass
    return {"patient_id": _str(ds, "PatientID"), "name": _str(ds, "PatientName"), "id_card_no": id_card,
            "sex": {"M": "1", "F": "2"}.get(sex or "", sex), "birth_date": _dicom_date(_str(ds, "PatientBirthDate")),
            "institution_name": _str(ds, "InstitutionName"), "request_id": request_id}


def _dicom_date(v: str | None) -> str | None:
    if v and len(v) >= 8 and v[:8].isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:8]}"
    return v


def _dicom_datetime(date: str | None, time: str | None) -> str | None:
    d = _dicom_date(date)
    if not d:
        return None
    t = (time or "").split(".")[0].ljust(6, "0")[:6]
    return f"{d} {t[:2]}:{t[2:4]}:{t[4:6]}" if t.isdigit() else d


def inspect_dicom_image(path: Path) -> dict:
    """Header fields of one imaging DICOM file and ``__reason`` (None when it looks whole)."""
    ds, has_meta, reason = _read_dicom(path, defer=True)
    row: dict = {"has_file_meta": has_meta, "__reason": reason}
    if ds is None:
        return row
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts == DEFLATED:  # offsets of deferred values point into the inflated stream, not the file
        ds, _, reason = _read_dicom(path, defer=False)
        if ds is None:
            return {**row, "__reason": reason}
    row.update(_identity(ds))
    row.update(
        transfer_syntax=str(ts) if ts else None, sop_class_uid=_str(ds, "SOPClassUID"),
        sop_instance_uid=_str(ds, "SOPInstanceUID"), study_instance_uid=_str(ds, "StudyInstanceUID"),
        series_instance_uid=_str(ds, "SeriesInstanceUID"), accession_number=_str(ds, "AccessionNumber"),
        modality=_str(ds, "Modality"), body_part=_str(ds, "BodyPartExamined"),
        study_date=_dicom_date(_str(ds, "StudyDate")), study_time=_str(ds, "StudyTime"),
        rows=_int(ds, "Rows"), columns=_int(ds, "Columns"), frames=_int(ds, "NumberOfFrames") or 1,
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1, bits_allocated=_int(ds, "BitsAllocated"),
        photometric_interpretation=_str(ds, "PhotometricInterpretation"))
    try:
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    except Exception:  # noqa: BLE001
        return {**row, "__reason": "truncated_dicom"}
    if raw is None:
        return row  # no image (e.g. a structured report): nothing to size-check here
    encapsulated = bool(ts and ts.is_encapsulated)
    value = getattr(raw, "value", None)
    if encapsulated or raw.length == 0xFFFFFFFF:
        try:  # fragments: only a full read tells whether the sequence is complete
            import pydicom

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = pydicom.dcmread(path, force=True)
                row["pixel_bytes"] = len(full.PixelData)
        except Exception:  # noqa: BLE001
            row["__reason"] = "truncated_dicom"
        return row
    available = len(value) if value is not None else max(0, min(raw.length, path.stat().st_size - raw.value_tell))
    row["pixel_bytes"] = available
    if row["rows"] and row["columns"] and row["bits_allocated"]:
        bits = row["rows"] * row["columns"] * row["samples_per_pixel"] * row["frames"] * row["bits_allocated"]
        expected = (bits + 7) // 8
        row["expected_pixel_bytes"] = expected
        if available < expected:
            row["__reason"] = "truncated_dicom"
    return row


def _lead_name(ch) -> str | None:
    try:
        src = ch.ChannelSourceSequence[0]
        code = str(src.get("CodeValue", "")).strip()
        return SCPECG_LEADS.get(code) or (str(src.get("CodeMeaning", "")).replace("Lead ", "").strip() or code)
    except Exception:  # noqa: BLE001
        return None


def inspect_dicom_ecg(path: Path) -> dict:
    """Header fields of one DICOM ECG waveform file and ``__reason``."""
    ds, _, reason = _read_dicom(path, defer=False)
    row: dict = {"format": "dicom", "__reason": reason}
    if ds is None:
        return row
    row.update(_identity(ds))
    row.update(sop_instance_uid=_str(ds, "SOPInstanceUID"),
               recorded_at=_dicom_datetime(*(
                   (_str(ds, "AcquisitionDateTime")[:8], _str(ds, "AcquisitionDateTime")[8:14])
                   if _str(ds, "AcquisitionDateTime") else (_str(ds, "ContentDate"), _str(ds, "ContentTime")))))
    try:
        group = ds.WaveformSequence[0]
        n_ch, n_s = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
        fs = float(group.SamplingFrequency)
        bits = int(group.WaveformBitsAllocated)
        data = group.get("WaveformData")
        row.update(n_leads=n_ch, n_samples=n_s, sampling_rate=fs, duration_s=n_s / fs if fs else None,
                   lead_names=[_lead_name(c) for c in group.get("ChannelDefinitionSequence") or []],
                   signal_bytes=len(data) if data is not None else 0,
                   expected_signal_bytes=n_ch * n_s * bits // 8)
    except Exception:  # noqa: BLE001
        row["__reason"] = "not_ecg_waveform"
        return row
    if row["signal_bytes"] < row["expected_signal_bytes"]:
        row["__reason"] = "truncated_ecg"
    return row


def _wfdb_comments(hea: Path) -> dict:
    """``key: value`` comment lines of a WFDB header (UTF-8; wfdb itself reads ASCII only)."""
    out = {}
    for line in hea.read_bytes().decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            out[key.strip().lower()] = value.strip()
    return out


def inspect_wfdb(hea: Path, dat_paths: list[Path]) -> dict:
    """Header fields of one WFDB recording and ``__reason``; ``dat_paths`` are the delivered
    signal files next to the header."""
    import wfdb

    row: dict = {"format": "wfdb", "__reason": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = wfdb.rdheader(str(hea.with_suffix("")))
        n_sig, sig_len, fs = int(h.n_sig or 0), int(h.sig_len or 0), float(h.fs)
    except Exception:  # noqa: BLE001
        return {**row, "__reason": "unreadable_header"}
    comments = _wfdb_comments(hea)
    when = None
    if h.base_date is not None:
        when = dt.datetime.combine(h.base_date, h.base_time or dt.time()).strftime("%Y-%m-%d %H:%M:%S")
    sex = comments.get("<sex>") or next((v.split("<sex>:")[1].strip() for v in comments.values()
                                         if "<sex>:" in v), None)
    if sex is None and "<age>" in comments and "<sex>:" in comments["<age>"]:
        sex = comments["<age>"].split("<sex>:")[1].strip()
    row.update(n_leads=n_sig, lead_names=list(h.sig_name or []), sampling_rate=fs, n_samples=sig_len,
               duration_s=sig_len / fs if fs else None, recorded_at=when,
               patient_id=comments.get("patient_id"), name=comments.get("name"),
               id_card_no=comments.get("id_card_no"), birth_date=comments.get("birth_date"),
               sex={"M": "1", "F": "2"}.get(sex or "", sex), request_id=comments.get("request_id"))
    by_name = {p.name: p for p in dat_paths}
    expected = actual = 0
    for fname in sorted(set(h.file_name or [])):
        if fname not in by_name:
            return {**row, "__reason": "missing_signal_file"}
        chans = [i for i, f in enumerate(h.file_name) if f == fname]
        per = WFDB_BYTES_PER_SAMPLE.get(str(h.fmt[chans[0]]))
        actual += by_name[fname].stat().st_size
        if per is None:
            continue
        expected += int(len(chans) * sig_len * per) + int((h.byte_offset or [0] * n_sig)[chans[0]] or 0)
    row.update(signal_bytes=actual, expected_signal_bytes=expected or None)
    if expected and actual < expected:
        row["__reason"] = "truncated_ecg"
    return row


# ---- the connector ---------------------------------------------------------------------------------

def _org_code(rel_path: str) -> str | None:
    parts = rel_path.split("/")
    return parts[1] if len(parts) >= 3 else None


def _file_row(f: landing.DeliveredFile, landed: Path) -> dict:
    return {"rel_path": f.rel_path, "delivery_day": f.delivery_day, "sha256": f.sha256,
            "size_bytes": f.size_bytes, "landing_path": str(landed), "org_code": _org_code(f.rel_path),
            "is_deleted": 0}


def check_dicom_image(path: Path) -> dict:
    """:func:`inspect_dicom_image` that never raises: the header fields and ``__reason`` of one
    imaging DICOM file (shared with the PACS connector, :mod:`ingest.connectors.orthanc`)."""
    try:
        return inspect_dicom_image(path)
    except Exception as exc:  # noqa: BLE001 - last resort: one bad file never stops the run
        return {"__reason": f"unreadable_header:{type(exc).__name__}"}


def _dicom_rows(files, landed: dict[str, Path]) -> tuple[list[dict], dict[str, str]]:
    rows, primary = [], {}
    for f in files:
        info = check_dicom_image(landed[f.rel_path])
        rows.append({**_file_row(f, landed[f.rel_path]), **info})
        primary[f.rel_path] = f.rel_path
    return rows, primary


def _recordings(files: list[landing.DeliveredFile]) -> list[list[landing.DeliveredFile]]:
    """ECG files grouped into recordings: a .dcm alone, a WFDB record's .hea + signal files, or
    any other file alone."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for f in files:
        stem, ext = os.path.splitext(f.rel_path)
        key = (stem, "wfdb") if ext.lower() in (".hea", ".dat") else (f.rel_path, "file")
        groups[key].append(f)
    return [sorted(g, key=lambda f: (not f.rel_path.lower().endswith(".hea"), f.rel_path))
            for _, g in sorted(groups.items())]


def _ecg_rows(recordings, landed: dict[str, Path]) -> tuple[list[dict], dict[str, str]]:
    rows, primary = [], {}
    for group in recordings:
        head = group[0]
        path = landed[head.rel_path]
        ext = os.path.splitext(head.rel_path)[1].lower()
        try:
            if ext == ".hea":
                info = inspect_wfdb(path, [landed[f.rel_path] for f in group[1:]])
            elif ext == ".dat":
                info = {"format": "wfdb", "__reason": "missing_header"}
            elif ext == ".dcm" or _has_preamble(path):
                info = inspect_dicom_ecg(path)
            else:
                info = {"__reason": "unsupported_file"}
        except Exception as exc:  # noqa: BLE001
            info = {"__reason": f"unreadable_header:{type(exc).__name__}"}
        row = _file_row(head, path)
        if len(group) > 1:
            row["sha256"] = hashlib.sha256("|".join(f.sha256 for f in group).encode()).hexdigest()
            row["size_bytes"] = sum(f.size_bytes for f in group)
        row["rel_paths"] = [f.rel_path for f in group]
        row["landing_paths"] = [str(landed[f.rel_path]) for f in group]
        row["request_id"] = os.path.splitext(os.path.basename(head.rel_path))[0]
        rows.append({**row, **{k: v for k, v in info.items() if k != "request_id" or v}})
        for f in group:
            primary[f.rel_path] = head.rel_path
    return rows, primary


def ingest(spark, settings, *, kind: str, until=None, full: bool = False) -> list[common.BatchResult]:
    """Land and check the pending files of ``kind`` ("dicom" or "ecg") delivered before ``until``
    (all delivered files with ``full``); returns the batch results (empty when nothing is new)."""
    if kind not in KINDS:
        raise ValueError(f"unknown media kind {kind!r}; expected one of {sorted(KINDS)}")
    source = KINDS[kind]
    lake_root = settings.lake_root
    started = dt.datetime.now()
    delivered = landing.delivered_files(settings.dropzone_root, source, until)
    done = landing.loaded_keys(spark, lake_root, source)
    pending = delivered if full else [f for f in delivered if (f.rel_path, f.sha256) not in done]
    if not pending:
        return []
    if kind == "ecg":
        # a recording is re-checked whole when any of its files is new
        pending_stems = {os.path.splitext(f.rel_path)[0] for f in pending}
        files = [f for f in delivered if os.path.splitext(f.rel_path)[0] in pending_stems]
    else:
        files = pending
    landed = {f.rel_path: landing.land(f, settings.landing_root) for f in files}
    if kind == "dicom":
        rows, primary = _dicom_rows(files, landed)
        schema = DICOM_SCHEMA
    else:
        rows, primary = _ecg_rows(_recordings(files), landed)
        schema = ECG_SCHEMA
    df = rows_frame(spark, rows, schema)
    df = df.withColumn("_source_file", df.rel_path)   # one file (recording) per row
    batch = ops.batch_id(source, ENTITY, *sorted(f.sha256 for f in files))
    result = common.load_batch(
        spark, lake_root, df, source=source, entity=ENTITY, keys=KEYS, batch_id=batch,
        source_file=None, order_by=None, watermark_to_column=None, started=started)
    results = [result]
    common.record_ops(spark, lake_root, results)

    by_primary = {r["rel_path"]: r for r in rows}
    manifest = []
    for f in files:
        if full and (f.rel_path, f.sha256) in done:
            continue  # a full re-read keeps each file's original record
        row = by_primary[primary[f.rel_path]]
        reason = row.get("__reason")
        is_primary = primary[f.rel_path] == f.rel_path
        manifest.append({
            "source": source, "rel_path": f.rel_path, "sha256": f.sha256, "delivery_day": f.delivery_day,
            "size_bytes": f.size_bytes, "landing_path": str(landed[f.rel_path]), "entity": ENTITY,
            "batch_id": batch, "rows_read": 1 if is_primary else 0,
            "rows_loaded": 1 if is_primary and reason is None else 0,
            "rows_quarantined": 1 if is_primary and reason is not None else 0,
            "status": "quarantined" if reason else "loaded", "reason": reason})
    landing.record_files(spark, lake_root, manifest)
    return results


def rows_frame(spark, rows: list[dict], schema: str):
    """A DataFrame of ``rows`` (dicts; missing keys are NULL, extra keys ignored) with DDL ``schema``."""
    columns = [c.strip().split(" ", 1)[0] for c in _split_schema(schema)]
    return spark.createDataFrame([tuple(r.get(c) for c in columns) for r in rows], schema)


def _split_schema(ddl: str) -> list[str]:
    """Top-level fields of a DDL string (commas inside ``ARRAY<...>`` do not split)."""
    out, depth, cur = [], 0, ""
    for ch in ddl:
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [s.strip() for s in out + [cur] if s.strip()]
