"""The DICOM / ECG file connector: good files land in bronze, broken ones in quarantine with their
reason, batches reconcile, files are recorded, reruns and crashes change nothing, and ``until``
bounds the delivery days."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from ingest.connectors import media_files
from ingest.simulator import media
from ingest.simulator.media import EcgExam, ImagingExam, PatientIdentity
from lakehouse import delta
from lakehouse.faults import InjectedFault

pytestmark = pytest.mark.spark

DAY1, DAY2 = "2025-12-22", "2025-12-23"
ORG = "H350921001"
PATIENT = PatientIdentity("R000777", "林建国", "350921196402150031", "1", dt.date(1964, 2, 15))
TABLES = ["bronze.dicom__files", "quarantine.dicom__files", "bronze.ecg__files", "quarantine.ecg__files",
          "ops.ingest_batches", "ops.landed_files"]


def _deliver(s) -> None:
    """Two delivery days: good and broken imaging files and ECG recordings."""
    dicom, ecg = s.dropzone_root / "dicom", s.dropzone_root / "ecg"
    when = dt.datetime(2025, 12, 22, 10, 5)
    media.write_imaging_exam(dicom / DAY1, PATIENT, ImagingExam("A001", "Q1", ORG, "屏南县医院", "DX", "CHEST", when), 1)
    media.write_imaging_exam(dicom / DAY1, PATIENT,
                             ImagingExam("A002", "Q2", ORG, "屏南县医院", "CT", "HEAD", when, "truncated_dicom"), 1)
    (dicom / DAY1 / ORG / "A003").mkdir(parents=True)
    (dicom / DAY1 / ORG / "A003" / "1.dcm").write_text("this is a scanned request form, not DICOM\n")
    media.write_imaging_exam(dicom / DAY2, PATIENT, ImagingExam("A004", "Q4", ORG, "屏南县医院", "MR", "HEAD",
                                                                 when + dt.timedelta(days=1)), 1)

    def e(rid, fmt, defect=None, day_offset=0):
        return EcgExam(rid, ORG, "屏南县医院", when + dt.timedelta(days=day_offset), "sinus", 70, 0.03, fmt, defect)
    media.write_ecg(ecg / DAY1, PATIENT, e("E001", "dicom"), 1)
    media.write_ecg(ecg / DAY1, PATIENT, e("E002", "wfdb"), 1)
    media.write_ecg(ecg / DAY1, PATIENT, e("E003", "dicom", "truncated_ecg"), 1)
    media.write_ecg(ecg / DAY1, PATIENT, e("E004", "wfdb", "truncated_ecg"), 1)
    media.write_ecg(ecg / DAY1, PATIENT, e("E005", "wfdb"), 1)
    (ecg / DAY1 / ORG / "E005.dat").unlink()  # header without its signal file
    media.write_ecg(ecg / DAY2, PATIENT, e("E006", "wfdb", "flatline_ecg", 1), 1)


def _ingest(spark, s, **kw):
    return media_files.ingest(spark, s, kind="dicom", **kw) + media_files.ingest(spark, s, kind="ecg", **kw)


def _path(s, table):
    return f"{s.lake_root}/{table.replace('.', '/')}"


def _rows(spark, s, table):
    return spark.read.format("delta").load(_path(s, table))


def _snapshot(spark, s):
    return {t: delta.content_hash(spark, _path(s, t)) if delta.table_exists(spark, _path(s, t)) else None
            for t in TABLES}


def _versions(spark, s):
    return {t: delta.table_version(spark, _path(s, t)) for t in TABLES}


def _content(spark, s, table, drop=("_ingested_at", "landing_path", "landing_paths", "_row_hash")):
    """Row hashes without load time and the home-specific landing paths (nor the stored row hash,
    which covers them)."""
    from pyspark.sql import functions as F

    df = _rows(spark, s, table)
    df = df.drop(*[c for c in drop if c in df.columns])
    if "raw_payload" in df.columns:
        df = df.withColumn("raw_payload", F.replace("raw_payload", F.lit(str(s.home)), F.lit("")))
    if table == "ops.ingest_batches":
        df = df.drop("started_at", "finished_at", "rows_inserted", "rows_updated", "rows_unchanged")
    return sorted(r[0] for r in df.select(delta.row_hash(df, exclude=()).alias("h")).collect())


@pytest.fixture
def delivered(settings_for):
    s = settings_for("media")
    _deliver(s)
    return s


def test_files_land_in_bronze_or_quarantine_and_everything_reconciles(spark, delivered):
    s = delivered
    results = _ingest(spark, s)
    assert [r.table for r in results] == ["bronze.dicom__files", "bronze.ecg__files"]

    dicom = {r.rel_path: r for r in _rows(spark, s, "bronze.dicom__files").collect()}
    n_dx = len([p for p in dicom if "/A001/" in p])
    n_ct = len(list((s.dropzone_root / "dicom" / DAY1 / ORG / "A002").iterdir()))
    assert 1 <= n_dx <= 2 and len([p for p in dicom if "/A002/" in p]) == n_ct - 1
    row = dicom[f"{DAY1}/{ORG}/A001/1.dcm"]
    assert row.modality == "DX" and row.accession_number == "A001" and row.org_code == ORG
    assert row.patient_id == "R000777" and row.name == "林建国" and row.id_card_no == "350921196402150031"
    assert row.sop_class_uid == "1.2.840.10008.5.1.4.1.1.1.1" and row.transfer_syntax == "1.2.840.10008.1.2.1"
    assert row.rows > 0 and row.columns > 0 and row.frames == 1 and row.is_deleted == 0
    assert row.delivery_day == DAY1 and len(row.sha256) == 64 and row.study_instance_uid
    assert (s.landing_root / "dicom" / row.rel_path).read_bytes() == \
        (s.dropzone_root / "dicom" / row.rel_path).read_bytes()

    q = {r.record_key.split("|")[0]: r.reason_code for r in _rows(spark, s, "quarantine.dicom__files").collect()}
    assert q == {f"{DAY1}/{ORG}/A002/{n_ct}.dcm": "truncated_dicom", f"{DAY1}/{ORG}/A003/1.dcm": "not_dicom"}
    payloads = [r.raw_payload for r in _rows(spark, s, "quarantine.dicom__files").collect()]
    assert all("林建国" not in p and "350921196402150031" not in p for p in payloads)  # masked

    ecg = {r.request_id: r for r in _rows(spark, s, "bronze.ecg__files").collect()}
    assert set(ecg) == {"E001", "E002", "E006"}
    assert ecg["E001"].format == "dicom" and ecg["E002"].format == "wfdb"
    for r in ecg.values():
        assert r.n_leads == 12 and r.sampling_rate == 500 and r.n_samples == 5000 and r.duration_s == 10
        assert list(r.lead_names) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        assert r.patient_id == "R000777" and r.org_code == ORG
    assert ecg["E001"].recorded_at == ecg["E002"].recorded_at == "2025-12-22 10:05:00"
    assert list(ecg["E002"].rel_paths) == [f"{DAY1}/{ORG}/E002.hea", f"{DAY1}/{ORG}/E002.dat"]
    q = {r.record_key.split("|")[0]: r.reason_code for r in _rows(spark, s, "quarantine.ecg__files").collect()}
    assert q == {f"{DAY1}/{ORG}/E003.dcm": "truncated_ecg", f"{DAY1}/{ORG}/E004.hea": "truncated_ecg",
                 f"{DAY1}/{ORG}/E005.hea": "missing_signal_file"}

    batches = _rows(spark, s, "ops.ingest_batches").collect()
    assert len(batches) == 2
    for b in batches:
        assert b.rows_read == b.rows_loaded + b.rows_quarantined
        bronze = _rows(spark, s, b.target_table).where(f"_batch_id = '{b.batch_id}'").count()
        quarantined = _rows(spark, s, f"quarantine.{b.source}__files").where(f"_batch_id = '{b.batch_id}'").count()
        assert (bronze, quarantined) == (b.rows_loaded, b.rows_quarantined)

    landed = {(r.source, r.rel_path): r for r in _rows(spark, s, "ops.landed_files").collect()}
    delivered_files = {("dicom", p.relative_to(s.dropzone_root / "dicom").as_posix())
                       for p in (s.dropzone_root / "dicom").rglob("*") if p.is_file()}
    delivered_files |= {("ecg", p.relative_to(s.dropzone_root / "ecg").as_posix())
                        for p in (s.dropzone_root / "ecg").rglob("*") if p.is_file()}
    assert set(landed) == delivered_files
    assert landed[("dicom", f"{DAY1}/{ORG}/A003/1.dcm")].status == "quarantined"
    assert landed[("dicom", f"{DAY1}/{ORG}/A003/1.dcm")].reason == "not_dicom"
    assert landed[("ecg", f"{DAY1}/{ORG}/E004.dat")].status == "quarantined"
    assert landed[("ecg", f"{DAY1}/{ORG}/E002.dat")].status == "loaded"
    for b in batches:
        files = [r for r in landed.values() if r.batch_id == b.batch_id]
        assert sum(r.rows_read for r in files) == b.rows_read
        assert sum(r.rows_quarantined for r in files) == b.rows_quarantined


def test_reruns_change_nothing_and_a_new_file_is_loaded_alone(spark, delivered):
    s = delivered
    _ingest(spark, s)
    before, versions = _snapshot(spark, s), _versions(spark, s)
    assert _ingest(spark, s) == []
    assert _snapshot(spark, s) == before and _versions(spark, s) == versions
    results = _ingest(spark, s, full=True)  # a full re-read: the same rows, nothing rewritten
    assert all(r.inserted == r.updated == 0 for r in results)
    for t in ("bronze.dicom__files", "bronze.ecg__files", "quarantine.dicom__files", "quarantine.ecg__files",
              "ops.landed_files"):
        assert _snapshot(spark, s)[t] == before[t], t

    # the missing signal file arrives late: the recording is re-checked whole and now loads
    media.write_ecg(s.dropzone_root / "ecg" / "tmp", PATIENT, EcgExam(
        "E005", ORG, "屏南县医院", dt.datetime(2025, 12, 22, 10, 5), "sinus", 70, 0.03, "wfdb"), 1)
    shutil.move(str(s.dropzone_root / "ecg" / "tmp" / ORG / "E005.dat"), s.dropzone_root / "ecg" / DAY1 / ORG)
    shutil.rmtree(s.dropzone_root / "ecg" / "tmp")
    (result,) = media_files.ingest(spark, s, kind="ecg")
    assert (result.rows_read, result.rows_loaded) == (1, 1)
    e5 = _rows(spark, s, "bronze.ecg__files").where("request_id = 'E005'").collect()
    assert len(e5) == 1 and e5[0].n_samples == 5000
    hea = _rows(spark, s, "ops.landed_files").where(f"rel_path = '{DAY1}/{ORG}/E005.hea'").collect()
    assert [(r.status, r.batch_id) for r in hea] == [("loaded", result.batch_id)]


def test_a_crash_after_bronze_then_a_rerun_gives_the_uninterrupted_tables(spark, delivered, settings_for, monkeypatch):
    clean, crashed = settings_for("clean"), settings_for("crashed")
    for target in (clean, crashed):
        shutil.copytree(delivered.dropzone_root, target.dropzone_root)
    _ingest(spark, clean)
    monkeypatch.setenv("JL_FAULT_INJECT", "after_bronze:dicom__files,after_bronze:ecg__files")
    with pytest.raises(InjectedFault):
        media_files.ingest(spark, crashed, kind="dicom")
    with pytest.raises(InjectedFault):
        media_files.ingest(spark, crashed, kind="ecg")
    assert not delta.table_exists(spark, _path(crashed, "ops.landed_files"))
    monkeypatch.delenv("JL_FAULT_INJECT")
    _ingest(spark, crashed)
    for t in TABLES:
        assert _content(spark, crashed, t) == _content(spark, clean, t), t


def test_until_loads_only_the_delivery_days_before_it(spark, delivered):
    s = delivered
    _ingest(spark, s, until=dt.date(2025, 12, 23))
    days = {r.delivery_day for r in _rows(spark, s, "ops.landed_files").collect()}
    assert days == {DAY1}
    assert _rows(spark, s, "bronze.dicom__files").where("accession_number = 'A004'").count() == 0
    _ingest(spark, s, until=dt.date(2025, 12, 24))
    assert {r.delivery_day for r in _rows(spark, s, "ops.landed_files").collect()} == {DAY1, DAY2}
    assert _rows(spark, s, "bronze.dicom__files").where("accession_number = 'A004'").count() > 0
    assert _rows(spark, s, "bronze.ecg__files").where("request_id = 'E006'").count() == 1
    assert _rows(spark, s, "ops.ingest_batches").count() == 4
