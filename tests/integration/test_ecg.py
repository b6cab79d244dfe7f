"""ECG pre-processing on Spark, on the recordings a small simulated city delivers (DICOM waveform and
WFDB, with flat-line and truncated defects): every landed recording is processed or quarantined,
a rerun processes nothing, the simulator's defects are all caught, and the triage flags agree with
the rhythm and rate the simulator generated (the reading centre's report in the source database)."""
from __future__ import annotations

import csv
import datetime as dt
import os

import pytest

from lakehouse import delta

pytestmark = pytest.mark.spark

# remote ECG used far more than in a real county, so that a few hundred residents send ~70 recordings
CITY = dict(residents=700, counties=2, townships_per_county=1, start=dt.date(2025, 12, 22), days=2, seed=21,
            remote_uptake=1000)
# the simulator's rhythms and the rates it draws for each (ingest/simulator/people.py)
RATES = {"sinus": (60, 95), "brady": (40, 55), "tachy": (105, 150), "afib": (70, 130), "pvc": (60, 95),
         "pause": (45, 70)}


def _rate(hr: int, low: int | None = None, high: int | None = None):
    """True / False for a rate clearly beyond / within the limit, None within 2/min of it."""
    limit, beyond = (low, hr < low) if low is not None else (high, hr > high)
    return None if abs(hr - limit) <= 2 else beyond


# the simulator's rhythm and rate → whether a reader expects the flag (None: either is right)
EXPECTED = {
    "bradycardia": lambda rhythm, hr: _rate(hr, low=60),
    "tachycardia": lambda rhythm, hr: _rate(hr, high=100),
    "irregular_rhythm": lambda rhythm, hr: rhythm == "afib",
    "frequent_ectopy": lambda rhythm, hr: rhythm == "pvc",
    "pause": lambda rhythm, hr: rhythm == "pause",
}


@pytest.fixture(scope="module")
def ecg_city(spark, tmp_path_factory):
    from ingest.connectors.sources import ingest_sources
    from ingest.simulator.city import CityConfig, DefectRates, simulate_city
    from lakehouse.settings import load_settings
    from spark_jobs.ecg.job import run_ecg

    s = load_settings({**os.environ, "JL_HOME": str(tmp_path_factory.mktemp("ecg"))})
    simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root,
                  CityConfig(**CITY, defects=DefectRates(flatline_ecg=0.08, truncated_ecg=0.08)))
    ingest_sources(spark, s, ("ecg",))
    return s, run_ecg(spark, s.lake_root)


def _silver(spark, s, name):
    return spark.read.format("delta").load(f"{s.lake_root}/silver/{name}")


def test_every_landed_recording_is_processed_or_quarantined_once(spark, ecg_city):
    from spark_jobs.ecg.features import ALGORITHM
    from spark_jobs.ecg.job import run_ecg

    s, first = ecg_city
    landed = spark.read.format("delta").load(f"{s.lake_root}/bronze/ecg__files").collect()
    assert {r.format for r in landed} == {"dicom", "wfdb"}
    assert first.processed + first.quarantined == len(landed) and first.processed > 50
    recordings = _silver(spark, s, "ecg_recordings").collect()
    assert {r.recording_id for r in recordings} == {r.sha256 for r in landed}
    assert all(r.algorithm == ALGORITHM and r.versions["neurokit2"] for r in recordings)
    assert not {"name", "id_card_no", "patient_id", "phone"} & set(_silver(spark, s, "ecg_recordings").columns)
    versions = {n: delta.table_version(spark, f"{s.lake_root}/silver/{n}")
                for n in ("ecg_recordings", "ecg_features", "ecg_flags")}
    again = run_ecg(spark, s.lake_root)
    assert (again.processed, again.quarantined) == (0, 0), "a rerun reads nothing"
    assert {n: delta.table_version(spark, f"{s.lake_root}/silver/{n}") for n in versions} == versions


def test_every_flat_line_and_truncated_recording_is_caught(spark, ecg_city):
    s, _ = ecg_city
    with open(s.ground_truth_dir / "defects.csv", encoding="utf-8") as f:
        defects = [r for r in csv.DictReader(f) if r["source"] == "ecg"]
    flat = {r["record_key"] for r in defects if r["defect"] == "flatline_ecg"}
    truncated = {r["record_key"] for r in defects if r["defect"] == "truncated_ecg"}
    assert flat and truncated
    cut = [f"{r.record_key} {r.raw_payload}" for r in spark.read.format("delta").load(
        f"{s.lake_root}/quarantine/ecg__files").where("reason_code = 'truncated_ecg'").collect()]
    assert {q for q in truncated if any(q in row for row in cut)} == truncated, "quarantined on landing"
    recordings = {r.request_id: r for r in _silver(spark, s, "ecg_recordings").collect()}
    retake = {r.recording_id for r in _silver(spark, s, "ecg_flags").where("flag = 'poor_quality'").collect()}
    for request_id in flat:
        rec = recordings[request_id]
        assert (rec.quality, rec.quality_reason) == ("unusable", "flat_line"), request_id
        assert rec.recording_id in retake, request_id
    unusable = {r for r, rec in recordings.items() if rec.quality == "unusable"}
    assert unusable == flat, "no real recording is called flat"


def test_flags_agree_with_the_rhythm_the_simulator_generated(spark, tmp_path):
    """Twelve recordings of each rhythm the simulator draws (rate in its range, noise 0.01-0.08 mV,
    DICOM and WFDB alternating) through the pipeline's own Spark function; each flag compared with
    the rhythm and rate laid out. A rate within 2/min of a limit counts either way (the simulator's
    rate is nominal, breathing moves it by a few per cent)."""
    import random

    from ingest.simulator import media
    from spark_jobs.ecg.job import analyse_recordings

    rnd = random.Random(4)
    patient = media.PatientIdentity("P0", "测试", "110101199003071234", "1", dt.date(1960, 1, 1))
    truth, rows = {}, []
    for i in range(12 * len(RATES)):
        rhythm = list(RATES)[i % len(RATES)]
        exam = media.EcgExam(f"AG{i:03d}", "H1", "卫生院", dt.datetime(2025, 12, 22, 9, 0), rhythm,
                             rnd.randint(*RATES[rhythm]), round(rnd.uniform(0.01, 0.08), 3), media.ECG_FORMATS[i % 2])
        rows.append((exam.request_id, media.write_ecg(tmp_path, patient, exam, seed=100 + i)[0].as_posix()))
        truth[exam.request_id] = (rhythm, exam.heart_rate)
    out = analyse_recordings(spark, spark.createDataFrame(rows, "recording_id STRING, path STRING")).collect()
    assert {r.recording_id for r in out} == set(truth) and {r.status for r in out} == {"processed"}
    flags = {r.recording_id: {f.flag for f in r.flags} for r in out}
    print(f"\n{len(out)} recordings, {len(RATES)} rhythms")
    low = []
    for flag, expect in EXPECTED.items():
        judged = {rid: expect(*truth[rid]) for rid in truth if expect(*truth[rid]) is not None}
        should = {rid for rid, e in judged.items() if e}
        got = {rid for rid in judged if flag in flags[rid]}
        tp, fp, fn = len(should & got), len(got - should), len(should - got)
        agreement = (len(judged) - fp - fn) / len(judged)
        sens, ppv = tp / max(tp + fn, 1), tp / max(tp + fp, 1)
        print(f"{flag:<18} judged {len(judged):>3} expected {len(should):>3} flagged {len(got):>3} TP {tp:>3} "
              f"FP {fp:>2} FN {fn:>2} agreement {agreement:.3f} sensitivity {sens:.3f} PPV {ppv:.3f}")
        if sens < 0.9 or ppv < 0.9 or agreement < 0.95:
            low.append(flag)
    assert not low
    assert not any("long_qtc" in f for f in flags.values()), "the simulator draws normal QT intervals"


def test_features_are_plausible_and_intervals_present_where_quality_allows(spark, ecg_city):
    s, _ = ecg_city
    feats = _silver(spark, s, "ecg_features").join(_silver(spark, s, "ecg_recordings").select("recording_id", "quality"),
                                                    "recording_id").where("quality = 'good'").collect()
    assert feats
    for f in feats:
        assert 30 <= f.heart_rate_bpm <= 200 and f.n_beats >= 3
        assert f.sdnn_ms is not None and f.rmssd_ms is not None
        assert f.qrs_axis_deg is None or -180 <= f.qrs_axis_deg <= 180
    with_qt = [f for f in feats if f.qt_ms is not None]
    assert len(with_qt) >= 0.8 * len(feats), "QT measured on most good recordings"
    assert all(300 <= f.qtc_fridericia_ms <= 500 for f in with_qt)
