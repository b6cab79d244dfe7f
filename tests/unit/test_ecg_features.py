"""The per-recording analysis (no Spark): DICOM waveform and WFDB read back to the simulator's
signal, features and flags of each simulated rhythm, unusable recordings flagged for a retake."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ingest.simulator import media
from spark_jobs.ecg.features import analyse
from spark_jobs.ecg.readers import EcgReadError, read_dicom_ecg, read_recording

PATIENT = media.PatientIdentity("P1", "测试", "110101199003071234", "1", dt.date(1990, 3, 7))
LEADS = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]


def _exam(rhythm="sinus", hr=72, fmt="dicom", defect=None, request_id="ECG1"):
    return media.EcgExam(request_id, "H1", "卫生院", dt.datetime(2025, 12, 22, 9, 0), rhythm, hr, 0.05, fmt, defect)


@pytest.mark.parametrize("fmt", media.ECG_FORMATS)
def test_both_formats_read_back_to_the_recorded_microvolts(tmp_path, fmt):
    exam = _exam(fmt=fmt)
    rec = read_recording(media.write_ecg(tmp_path, PATIENT, exam, seed=3)[0])
    expected = media._quantise(media.synthesize_ecg(exam, 3)) * media.ECG_UV_PER_LSB / 1000.0
    assert rec.lead_names == LEADS and rec.fs == 500 and rec.signals.shape == (5000, 12)
    assert np.abs(rec.signals - expected).max() < 1e-9


def test_a_truncated_dicom_waveform_is_a_read_error_not_a_crash(tmp_path):
    path = media.write_ecg(tmp_path, PATIENT, _exam(defect="truncated_ecg"), seed=3)[0]
    with pytest.raises(EcgReadError) as err:
        read_dicom_ecg(path)
    assert err.value.reason_code in ("truncated", "unreadable")


@pytest.mark.parametrize(("rhythm", "hr", "flag"), [
    ("brady", 45, "bradycardia"), ("tachy", 130, "tachycardia"), ("afib", 85, "irregular_rhythm"),
    ("pvc", 75, "frequent_ectopy"), ("pause", 65, "pause")])
def test_each_rhythm_gets_its_flag_and_sinus_none(tmp_path, rhythm, hr, flag):
    sinus = analyse(read_recording(media.write_ecg(tmp_path, PATIENT, _exam(request_id="S"), seed=5)[0]))
    assert sinus.flags == [] and 65 < sinus.heart_rate_bpm < 80
    a = analyse(read_recording(media.write_ecg(tmp_path, PATIENT, _exam(rhythm, hr, request_id=rhythm), seed=5)[0]))
    assert flag in {f["flag"] for f in a.flags}
    assert all(f["reason"] and f["priority"] for f in a.flags)


def test_intervals_and_axis_of_a_clean_sinus_recording(tmp_path):
    a = analyse(read_recording(media.write_ecg(tmp_path, PATIENT, _exam(hr=60), seed=9)[0]))
    assert a.quality == "good" and a.delineation_lead == "ii"
    assert 100 <= a.pr_ms <= 250 and 60 <= a.qrs_ms <= 140 and 340 <= a.qt_ms <= 460
    assert a.qtc_bazett_ms == pytest.approx(a.qt_ms / np.sqrt(a.rr_mean_ms / 1000), rel=0.05)
    assert -30 <= a.qrs_axis_deg <= 100          # the simulator draws the frontal axis in 15-75°
    assert a.sdnn_ms > 0 and a.rmssd_ms > 0 and set(a.versions) >= {"neurokit2", "numpy"}


@pytest.mark.parametrize("fmt", media.ECG_FORMATS)
def test_a_flat_line_recording_is_unusable_and_sent_back(tmp_path, fmt):
    exam = _exam(fmt=fmt, defect="flatline_ecg", request_id=f"F{fmt}")
    a = analyse(read_recording(media.write_ecg(tmp_path, PATIENT, exam, seed=2)[0]))
    assert (a.quality, a.quality_reason, a.usable_leads) == ("unusable", "flat_line", 0)
    assert [f["flag"] for f in a.flags] == ["poor_quality"]
    assert a.heart_rate_bpm is None
