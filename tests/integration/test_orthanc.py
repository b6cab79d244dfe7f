"""The regional PACS as a source: a real Orthanc (``infra/orthanc/start.sh``) receives the
simulated city's imaging exams, and the ``orthanc`` connector pulls them from its changes feed
into bronze: every instance the PACS holds is in ``bronze.orthanc__files`` (or, truncated, in
quarantine with its reason), a rerun writes nothing, a crash before the watermark is harmless, and
the next day's run adds exactly that day's instances and moves the watermark."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ingest.connectors import orthanc
from ingest.connectors.sources import SOURCE_KINDS, configured_kinds, ingest_sources
from ingest.simulator.city import CityConfig, DefectRates, simulate_city
from ingest.simulator.pacs import day_files, store_day_in_pacs
from lakehouse import delta, ops
from lakehouse.faults import InjectedFault

pytestmark = [pytest.mark.spark,
              pytest.mark.skipif(not Path("/usr/sbin/Orthanc").exists() and not shutil.which("Orthanc"),
                                 reason="Orthanc is not installed (make setup)")]

REPO = Path(__file__).resolve().parents[2]
DAY1, DAY2 = "2025-12-22", "2025-12-23"
# two counties (the last one runs the legacy system, whose exams are not exported), heavy use of
# remote imaging and many truncated exams: a few exams a day, ~25 instances, one truncated file a day
CITY = dict(residents=1500, counties=2, townships_per_county=2, start=dt.date.fromisoformat(DAY1), seed=8,
            remote_uptake=10, media_files=True, defects=DefectRates(truncated_dicom=0.4))
TABLES = ["bronze.orthanc__files", "quarantine.orthanc__files", "ops.ingest_batches", "ops.landed_files",
          "ops.watermarks"]
NO_LOGIN = {"JL_ORTHANC_USER": "", "JL_ORTHANC_PASSWORD": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pacs_url(tmp_path_factory):
    """A fresh Orthanc on a free loopback port, stopped at the end of the module."""
    data = tmp_path_factory.mktemp("orthanc")
    env = {**os.environ, **NO_LOGIN}
    try:
        started = subprocess.run(["bash", str(REPO / "infra/orthanc/start.sh"), str(data), str(_free_port())],
                                 capture_output=True, text=True, env=env, timeout=120)
        assert started.returncode == 0, started.stderr
        yield started.stdout.strip().splitlines()[-1]
    finally:  # a server that started too late for start.sh is stopped as well
        subprocess.run(["bash", str(REPO / "infra/orthanc/stop.sh"), str(data)], check=True, env=env, timeout=60)


def _path(s, table):
    return f"{s.lake_root}/{table.replace('.', '/')}"


def _rows(spark, s, table):
    return spark.read.format("delta").load(_path(s, table))


def _versions(spark, s):
    return {t: delta.table_version(spark, _path(s, t)) for t in TABLES}


def _sop_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, force=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def _truncated_files(s, day: str) -> set[str]:
    """Drop-zone paths (relative to dropzone/dicom) of the files the simulator cut short on ``day``:
    the last image of each exam with the ``truncated_dicom`` defect."""
    with open(s.ground_truth_dir / "defects.csv", encoding="utf-8") as f:
        exams = [r["detail"].split(", ") for r in csv.DictReader(f)
                 if r["source"] == "dicom" and r["defect"] == "truncated_dicom"]
    return {files[-1] for files in exams if files[-1].startswith(day)}


@pytest.fixture(scope="module")
def city(spark, pacs_url, tmp_path_factory):
    """(settings, store summary of day 1, ingest results): day 1's exams sent to the PACS and ingested."""
    from lakehouse.settings import load_settings

    s = load_settings({**os.environ, "JL_HOME": str(tmp_path_factory.mktemp("pacs_city")),
                       "JL_ORTHANC_URL": pacs_url, **NO_LOGIN})
    simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root, CityConfig(**CITY, days=1))
    sent = store_day_in_pacs(s.dropzone_root, DAY1, pacs_url)
    results = ingest_sources(spark, s, ("orthanc",))["orthanc"]
    return s, sent, results


def _assert_every_study_in_silver(spark, s, good: list[Path], expect_parsed: int) -> None:
    """The imaging job catalogues what the PACS pull landed: only the new files, and then every
    study the PACS holds is in silver with all its instances."""
    import pydicom

    from spark_jobs.imaging.job import run_imaging

    result = run_imaging(spark, s.lake_root)
    assert (result.parsed, result.quarantined) == (expect_parsed, 0)
    want: dict[str, set] = {}
    for p in good:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        want.setdefault(str(ds.StudyInstanceUID), set()).add(str(ds.SOPInstanceUID))
    studies = {r.study_instance_uid: r.n_instances for r in _rows(spark, s, "silver.imaging_studies").collect()}
    assert studies == {uid: len(sops) for uid, sops in want.items()}
    sources = {r.source for r in _rows(spark, s, "silver.imaging_instances").collect()}
    assert sources == {"orthanc"}


def test_every_instance_the_pacs_received_is_in_bronze_or_quarantined_with_its_reason(spark, city):
    s, sent, results = city
    dicom = s.dropzone_root / "dicom"
    files = day_files(s.dropzone_root, DAY1)
    truncated = _truncated_files(s, DAY1)
    assert len(files) >= 10 and truncated, "the test city must have exams and a truncated file on day 1"
    # the PACS took every file: the truncated ones as a modality sends them (short Pixel Data)
    assert sent.rejected == {} and sent.stored == len(files) and sent.resent_short == len(truncated)
    assert set(sent.instances) == {p.relative_to(dicom).as_posix() for p in files}

    (result,) = results
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == \
        (len(files), len(files) - len(truncated), len(truncated))
    bronze = {r.sop_instance_uid: r for r in _rows(spark, s, "bronze.orthanc__files").collect()}
    good = [p for p in files if p.relative_to(dicom).as_posix() not in truncated]
    assert set(bronze) == {_sop_uid(p) for p in good}
    client = orthanc.OrthancClient(s.orthanc_url)
    assert {r.orthanc_study_id for r in bronze.values()} == set(client.studies())
    for p in good:
        row = bronze[_sop_uid(p)]
        rel = p.relative_to(dicom).as_posix()
        # the PACS serves the file it received, byte for byte, and the landing copy is that file
        assert row.orthanc_instance_id == sent.instances[rel]
        assert row.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
        assert Path(row.landing_path).read_bytes() == p.read_bytes()
        assert row.org_code == rel.split("/")[1] and row.accession_number == rel.split("/")[2]
        assert row.change_seq > 0 and row.modality and row.patient_id and row.is_deleted == 0
        assert row.rel_path == f"{row.delivery_day}/{row.orthanc_study_id}/{row.orthanc_instance_id}.dcm"

    quarantined = _rows(spark, s, "quarantine.orthanc__files").collect()
    assert sorted(r.record_key.split("|")[0] for r in quarantined) == sorted(sent.instances[t] for t in truncated)
    assert {r.reason_code for r in quarantined} == {"truncated_dicom"}
    for t in truncated:   # identifiers are masked in quarantine payloads
        import pydicom

        ds = pydicom.dcmread(dicom / t, force=True, specific_tags=["PatientName", "OtherPatientIDs"])
        assert all(str(ds.PatientName) not in r.raw_payload and str(ds.OtherPatientIDs) not in r.raw_payload
                   for r in quarantined)

    _assert_every_study_in_silver(spark, s, good, expect_parsed=len(good))

    (batch,) = _rows(spark, s, "ops.ingest_batches").where("source = 'orthanc'").collect()
    assert batch.rows_read == batch.rows_loaded + batch.rows_quarantined == len(files)
    assert (batch.watermark_from, batch.watermark_to) == ("0", result.watermark)
    landed = _rows(spark, s, "ops.landed_files").where("source = 'orthanc'").collect()
    assert len(landed) == len(files) and {r.status for r in landed} == {"loaded", "quarantined"}
    assert ops.get_watermark(spark, s.lake_root, "orthanc", "files") == result.watermark


def test_a_rerun_writes_nothing(spark, city):
    s, _, _ = city
    before = _versions(spark, s)
    assert orthanc.ingest(spark, s) == []
    assert _versions(spark, s) == before


def test_the_next_day_adds_only_its_instances_and_a_crash_before_the_watermark_is_harmless(
        spark, city, monkeypatch):
    s, _, _ = city
    mark1 = int(ops.get_watermark(spark, s.lake_root, "orthanc", "files"))
    counts = {t: _rows(spark, s, t).count() for t in ("bronze.orthanc__files", "quarantine.orthanc__files")}
    simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root, CityConfig(**CITY, days=2))
    sent = store_day_in_pacs(s.dropzone_root, DAY2, s.orthanc_url)
    n_day2, n_truncated = len(day_files(s.dropzone_root, DAY2)), len(_truncated_files(s, DAY2))
    assert n_day2 and sent.stored == n_day2 and sent.rejected == {}

    monkeypatch.setenv("JL_FAULT_INJECT", "before_watermarks")
    with pytest.raises(InjectedFault):
        orthanc.ingest(spark, s)
    monkeypatch.delenv("JL_FAULT_INJECT")
    assert int(ops.get_watermark(spark, s.lake_root, "orthanc", "files")) == mark1   # not moved
    (result,) = orthanc.ingest(spark, s)    # the same slice again: the same batch, nothing twice

    added = {t: _rows(spark, s, t).count() - n for t, n in counts.items()}
    assert added == {"bronze.orthanc__files": n_day2 - n_truncated, "quarantine.orthanc__files": n_truncated}
    assert (result.rows_read, result.rows_quarantined) == (n_day2, n_truncated)
    day2 = {r.sop_instance_uid for r in _rows(spark, s, "bronze.orthanc__files").where(f"change_seq > {mark1}")
            .collect()}
    assert day2 == {_sop_uid(p) for p in day_files(s.dropzone_root, DAY2)
                    if p.relative_to(s.dropzone_root / "dicom").as_posix() not in _truncated_files(s, DAY2)}
    good = [p for day in (DAY1, DAY2) for p in day_files(s.dropzone_root, day)
            if p.relative_to(s.dropzone_root / "dicom").as_posix() not in _truncated_files(s, day)]
    _assert_every_study_in_silver(spark, s, good, expect_parsed=n_day2 - n_truncated)
    mark2 = int(ops.get_watermark(spark, s.lake_root, "orthanc", "files"))
    assert mark2 > mark1 and str(mark2) == result.watermark
    batches = _rows(spark, s, "ops.ingest_batches").where("source = 'orthanc'").collect()
    assert len(batches) == 2 and sum(b.rows_read for b in batches) == counts["bronze.orthanc__files"] + \
        counts["quarantine.orthanc__files"] + n_day2


def test_without_a_pacs_url_the_source_is_not_ingested(settings_for):
    s = settings_for("no_pacs", JL_ORTHANC_URL="")
    assert s.orthanc_url is None
    assert configured_kinds(s) == tuple(SOURCE_KINDS) and "orthanc" not in SOURCE_KINDS
    assert ingest_sources(None, s, ("orthanc",)) == {"orthanc": []}   # no Spark touched, no error
    assert "orthanc" in configured_kinds(settings_for("pacs", JL_ORTHANC_URL="http://127.0.0.1:9"))
