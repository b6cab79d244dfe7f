"""Multi-lead R-peak detection (spark_jobs.ecg) against the shared annotated ECG records."""
import numpy as np
import pytest

from lakehouse.settings import REPO_ROOT
from spark_jobs.ecg.detect import detect_r_peaks
from spark_jobs.ecg.evaluate import evaluate_dir, match_beats
from spark_jobs.ecg.readers import EcgReadError, read_wfdb

ECG_DIR = REPO_ROOT.parent / "shared" / "data" / "ecg"
needs_data = pytest.mark.skipif(
    not ECG_DIR.is_dir(), reason=f"shared ECG test data not found at {ECG_DIR} (see shared/data/README.md)"
)


@pytest.fixture(scope="module")
def evaluation():
    return evaluate_dir(ECG_DIR)


@needs_data
def test_total_sensitivity_and_ppv_at_least_99_9_percent(evaluation):
    total = evaluation["total"]
    assert evaluation["units"] == "percent"
    assert total["reference"] > 8000  # the four MIT-BIH records + LUDB were all found
    assert total["sensitivity"] >= 99.9, total
    assert total["ppv"] >= 99.9, total


@needs_data
def test_every_ludb_record_is_perfect(evaluation):
    ludb = [r for r in evaluation["records"] if "ludb" in r["record"]]
    assert len(ludb) >= 3
    for r in ludb:
        assert r["fn"] == 0 and r["fp"] == 0, r
        assert r["sensitivity"] == 100.0 and r["ppv"] == 100.0


@needs_data
def test_reader_handles_any_lead_count():
    rec = read_wfdb(ECG_DIR / "ptbdb" / "s0010_re")
    assert rec.signals.shape == (38400, 15) and rec.fs == 1000.0
    assert rec.lead_names[:3] == ["i", "ii", "iii"] and rec.lead_names[-3:] == ["vx", "vy", "vz"]
    res = detect_r_peaks(rec.signals, rec.fs, rec.lead_names)
    assert 45 <= res.n_beats <= 60  # ~81 bpm over 38.4 s
    assert res.algorithm and "neurokit2" in res.versions


def test_reader_raises_clear_error(tmp_path):
    with pytest.raises(EcgReadError) as e:
        read_wfdb(tmp_path / "nope")
    assert e.value.reason_code == "missing_header"
    (tmp_path / "t.hea").write_text("t 2 360 3600\nt.dat 212 200 11 1024 0 0 0 MLII\nt.dat 212 200 11 1024 0 0 0 V1\n")
    (tmp_path / "t.dat").write_bytes(b"\x00" * 300)  # far fewer than 3600 samples
    with pytest.raises(EcgReadError) as e:
        read_wfdb(tmp_path / "t")
    assert e.value.reason_code in {"truncated", "unreadable"}


def _synthetic(fs=500.0, seconds=20, hr=72, n_leads=3, seed=0):
    rng = np.random.default_rng(seed)
    n = int(fs * seconds)
    t = np.arange(n) / fs
    beats = np.arange(int(0.4 * fs), n - int(0.2 * fs), int(fs * 60 / hr))
    sig = np.zeros((n, n_leads))
    for k in range(n_leads):
        amp = (1.0, -0.6, 0.8, 0.5)[k % 4]
        for b in beats:
            sig[:, k] += amp * np.exp(-0.5 * ((t - b / fs) / 0.012) ** 2)          # QRS
            sig[:, k] += 0.2 * amp * np.exp(-0.5 * ((t - b / fs - 0.25) / 0.04) ** 2)  # T
        sig[:, k] += rng.normal(0, 0.01, n) + 0.1 * np.sin(2 * np.pi * 0.3 * t)
    return sig, fs, beats


def test_fully_flat_signal_gives_empty_result():
    for sig in (np.zeros((5000, 12)), np.zeros(5000), np.full((5000, 2), np.nan), np.full((5000, 3), 1.234)):
        res = detect_r_peaks(sig, 500.0)
        assert res.r_peaks.size == 0
        assert res.r_peaks.dtype.kind == "i"


def test_lead_off_lead_is_excluded_and_beats_still_found():
    sig, fs, beats = _synthetic()
    sig[:, 1] = 0.0                       # lead off for the whole record
    sig[2000:6000, 2] = sig[2000, 2]      # second lead off for 8 s
    res = detect_r_peaks(sig, fs, ["i", "ii", "v1"])
    assert res.excluded_leads.get("ii") == "flat"
    assert res.lead_quality["ii"] == 0.0
    tp, fn, fp = match_beats(beats, res.r_peaks, int(0.15 * fs))
    assert fn == 0 and fp == 0


def test_matching_is_one_to_one():
    ref = [1000, 2000, 3000]
    det = [995, 1010, 2004, 3300]          # two detections near beat 1; beat 3 missed
    assert match_beats(ref, det, 54) == (2, 1, 2)
    assert match_beats([], [5], 54) == (0, 0, 1)
    assert match_beats([5], [], 54) == (0, 1, 0)
    assert match_beats([100, 130], [115], 54) == (1, 1, 0)  # one detection cannot serve two beats
