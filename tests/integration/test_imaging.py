"""Imaging on Spark, on the exams a small simulated city delivers (DX, CR, CT, US, MR, some cut
short) plus the shared real DICOM files dropped by one institution: every landed file is catalogued
or quarantined once, every study reaches silver with its person, every series gets a thumbnail,
and a rerun parses nothing."""
from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

from lakehouse import delta
from lakehouse.settings import REPO_ROOT

pytestmark = pytest.mark.spark

SHARED_DICOM = REPO_ROOT.parent / "shared" / "data" / "dicom"
# remote imaging used far more than in a real county, so that a few hundred residents send ~60 exams
CITY = dict(residents=300, counties=2, townships_per_county=1, start=dt.date(2025, 12, 22), days=2, seed=31,
            remote_uptake=600)
SHARED_ACCESSION = "SHARED000001"
# what the shared files must become: (layer that decides, status or reason)
EXPECTED = {
    "CT_small.dcm": "ok", "MR_small.dcm": "ok", "MR_enhanced_multiframe.dcm": "ok", "CR_small_16x16.dcm": "ok",
    "CR_RG3_jpeg2000.dcm": "ok", "US_palette_OBXXXX1A.dcm": "ok", "NM_jpeg_lossless.dcm": "ok",
    "ECG_12lead_waveform.dcm": "ok", "MR_small_bigendian.dcm": "ok", "deflated_image_dfl.dcm": "ok",
    "CT_small_no_meta.dcm": "repaired",              # made below: CT_small without preamble and file meta
    "MR_truncated.dcm": "truncated_dicom",           # refused on landing (quarantine.dicom__files)
    "no_meta_stray_byte.dcm": "not_dicom",           # refused on landing
}


def _drop_shared_files(drop: Path, org_code: str) -> None:
    folder = drop / "dicom" / "2025-12-23" / org_code / SHARED_ACCESSION
    folder.mkdir(parents=True)
    for f in SHARED_DICOM.rglob("*.dcm"):
        shutil.copy(f, folder / f.name)
    raw = (SHARED_DICOM / "CT_small.dcm").read_bytes()
    (folder / "CT_small_no_meta.dcm").write_bytes(raw[336:])   # the data set alone, from its first element


@pytest.fixture(scope="module")
def imaging_city(spark, tmp_path_factory):
    from ingest.connectors.sources import ingest_sources
    from ingest.simulator.city import CityConfig, DefectRates, simulate_city
    from lakehouse.settings import load_settings
    from spark_jobs.conform.silver import conform_silver
    from spark_jobs.empi.match import run_empi
    from spark_jobs.imaging.job import run_imaging

    s = load_settings({**os.environ, "JL_HOME": str(tmp_path_factory.mktemp("imaging"))})
    simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root,
                  CityConfig(**CITY, defects=DefectRates(truncated_dicom=0.1)))
    org = sorted(p.name for p in (s.dropzone_root / "dicom").glob("*/*"))[0]
    _drop_shared_files(s.dropzone_root, org)
    ingest_sources(spark, s, ("reference", "regional", "dicom"))
    run_empi(spark, s.lake_root, s.pseudonym_key)
    conform_silver(spark, s.lake_root)
    return s, run_imaging(spark, s.lake_root, deid_key=s.deid_key, exchange_root=str(s.exchange_root / "imaging"))


def _table(spark, s, layer, name):
    return spark.read.format("delta").load(f"{s.lake_root}/{layer}/{name}")


def _read(path: Path):
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, stop_before_pixels=True)


def test_every_landed_file_is_catalogued_or_quarantined_once(spark, imaging_city):
    s, result = imaging_city
    bronze = _table(spark, s, "bronze", "dicom__files").toPandas()
    instances = _table(spark, s, "silver", "imaging_files").toPandas()
    quarantined = _table(spark, s, "quarantine", "imaging_files").toPandas() \
        if Path(s.lake_root, "quarantine", "imaging_files").is_dir() else None
    n_bad = 0 if quarantined is None else len(quarantined)
    assert result.parsed + result.quarantined == len(bronze)
    assert len(instances) + n_bad == len(bronze), "one silver row (or quarantine row) per landed file"
    # CT_small_no_meta and MR_small_bigendian are CT_small and MR_small again: one instance each
    catalogue = _table(spark, s, "silver", "imaging_instances").toPandas()
    assert sorted(catalogue.sop_instance_uid) == sorted(set(instances.sop_instance_uid))
    assert len(catalogue) == len(instances) - 2
    assert set(instances.file_id) | set([] if quarantined is None else quarantined.record_key) == set(bronze.sha256)
    assert not {"patient_id", "name", "id_card_no"} & set(instances.columns), "no identifiers in silver"

    # the shared files: each gets the status it should, on landing or in the job
    landed_bad = _table(spark, s, "quarantine", "dicom__files").toPandas()
    landed_bad["rel_path"] = landed_bad.record_key.str.split("|").str[0]
    by_name = {Path(r).name: status for r, status in zip(instances.rel_path, instances.status)}
    refused = {Path(r).name: reason for r, reason in zip(landed_bad.rel_path, landed_bad.reason_code)
               if SHARED_ACCESSION in r}
    got = {**by_name, **refused}
    assert {name: got.get(name) for name in EXPECTED} == EXPECTED
    repaired = instances[instances.status == "repaired"]
    assert list(repaired.repairs) == ["added_file_meta"]

    # the simulator's truncated exams: the cut file is refused on landing and never reaches silver
    import csv

    with open(Path(s.ground_truth_dir) / "defects.csv", newline="", encoding="utf-8") as f:
        cut = [row for row in csv.DictReader(f) if row["defect"] == "truncated_dicom"]
    assert cut, "the city has truncated exams"
    truncated = set(landed_bad[landed_bad.reason_code == "truncated_dicom"].rel_path)
    for row in cut:
        files = set(row["detail"].split(", "))
        assert len(files & truncated) == 1, row
        assert not files & truncated & set(instances.rel_path)


def test_every_study_is_in_silver_with_its_person_and_counts(spark, imaging_city):
    s, _ = imaging_city
    drop = s.dropzone_root / "dicom"
    bad = {k.split("|")[0] for k in _table(spark, s, "quarantine", "dicom__files").toPandas().record_key}
    expected: dict[str, set] = defaultdict(set)
    request_of = {}
    for f in drop.rglob("*.dcm"):
        if f.relative_to(drop).as_posix() in bad:
            continue
        ds = _read(f)
        expected[str(ds.StudyInstanceUID)].add(str(ds.SOPInstanceUID))
        for item in ds.get("RequestAttributesSequence") or []:
            request_of[str(ds.StudyInstanceUID)] = str(item.RequestedProcedureID)
    studies = _table(spark, s, "silver", "imaging_studies").toPandas().set_index("study_instance_uid")
    assert {u: int(studies.n_instances[u]) for u in studies.index} == {u: len(i) for u, i in expected.items()}
    requests = _table(spark, s, "silver", "imaging_requests").toPandas().set_index("request_id")
    linked = 0
    for uid, request_id in request_of.items():
        assert studies.request_id[uid] == request_id
        if request_id in requests.index:
            assert studies.person_id[uid] == requests.person_id[request_id]
            assert studies.reading_org_code[uid] == requests.reading_org_code[request_id]
            linked += 1
    assert linked >= 0.95 * len(request_of), "the studies are linked to the person of their request"


def test_every_series_with_an_image_has_a_thumbnail(spark, imaging_city):
    from PIL import Image
    import numpy as np

    s, _ = imaging_city
    series = _table(spark, s, "silver", "imaging_series").toPandas()
    thumbs = _table(spark, s, "silver", "imaging_thumbnails").toPandas().set_index("series_instance_uid")
    instances = _table(spark, s, "silver", "imaging_instances").toPandas()
    with_pixels = set(instances[instances.has_pixel_data].series_instance_uid)
    assert set(thumbs.index) == with_pixels
    assert thumbs.made.all(), thumbs[~thumbs.made][["thumbnail_reason"]]
    for uid in with_pixels:
        img = np.asarray(Image.open(io.BytesIO(thumbs.png[uid])))
        assert img.std() > 5 and max(img.shape[:2]) <= 256
    ecg = series[series.modality == "ECG"]
    assert len(ecg) == 1 and ecg.thumbnail_sop_instance_uid.isna().all(), "a waveform has no image to show"


def test_a_rerun_parses_nothing_and_changes_nothing(spark, imaging_city):
    from spark_jobs.imaging.job import FILES, INSTANCES, SERIES, STUDIES, THUMBNAILS, run_imaging

    s, _ = imaging_city
    from spark_jobs.imaging.job import DEIDENTIFIED, REID_MAP

    tables = (FILES, INSTANCES, SERIES, STUDIES, THUMBNAILS, DEIDENTIFIED, REID_MAP)
    before = {t.name: delta.table_version(spark, t.path(s.lake_root)) for t in tables}
    again = run_imaging(spark, s.lake_root, deid_key=s.deid_key, exchange_root=str(s.exchange_root / "imaging"))
    assert (again.parsed, again.quarantined, again.thumbnails, again.deidentified) == (0, 0, 0, 0)
    after = {t.name: delta.table_version(spark, t.path(s.lake_root)) for t in tables}
    assert after == before


def test_images_sent_to_a_reading_centre_are_de_identified(spark, imaging_city):
    """Every image of a study a reading centre was asked to read is copied, de-identified, into
    the exchange folder of that centre: none of the patient's identifiers is left anywhere in the
    file's bytes, UIDs are new but consistent, and only the restricted map leads back."""
    s, result = imaging_city
    studies = _table(spark, s, "silver", "imaging_studies").toPandas()
    sent_studies = studies[studies.reading_org_code.notna() & studies.person_id.notna()
                           & (studies.reading_org_code != studies.org_code)]
    instances = _table(spark, s, "silver", "imaging_instances").toPandas()
    expected = set(instances[instances.study_instance_uid.isin(sent_studies.study_instance_uid)].sop_instance_uid)
    copies = _table(spark, s, "silver", "imaging_deidentified").toPandas()
    assert len(expected) > 20 and set(copies.sop_instance_uid) == expected and result.deidentified == len(expected)
    assert copies.error.isna().all() and (copies.n_surviving == 0).all()
    reid = _table(spark, s, "restricted", "imaging_reid_map").toPandas()
    back = {(r.reading_org_code, r.replacement): r.original for r in reid[reid.kind == "uid"].itertuples()}
    by_sop = instances.set_index("sop_instance_uid")
    exchange = s.exchange_root / "imaging"
    for c in copies.itertuples():
        path = Path(c.deid_path)
        assert path.is_file() and path.is_relative_to(exchange / c.reading_org_code)
        original = _read(Path(by_sop.landing_path[c.sop_instance_uid]))
        copy = _read(path)
        data = path.read_bytes()
        charset = "utf-8" if "192" in str(original.get("SpecificCharacterSet", "")) else "gb18030"
        for value in (str(original.PatientID), str(original.PatientName), str(original.get("OtherPatientIDs", "")),
                      str(original.AccessionNumber), str(original.StudyInstanceUID), str(original.SOPInstanceUID)):
            if len(value) >= 4:
                assert value.encode(charset, errors="ignore") not in data, (path, value)
        assert copy.PatientIdentityRemoved == "YES" and str(copy.PatientID) != str(original.PatientID)
        assert back[(c.reading_org_code, str(copy.SOPInstanceUID))] == str(original.SOPInstanceUID)
        assert back[(c.reading_org_code, str(copy.StudyInstanceUID))] == str(original.StudyInstanceUID)
    per_study = copies.assign(study=copies.sop_instance_uid.map(by_sop.study_instance_uid))
    assert (per_study.groupby("study").deid_study_instance_uid.nunique() == 1).all(), "one new study UID per study"
    assert "reid" not in copies.columns and not {"original", "replacement"} & set(copies.columns)
