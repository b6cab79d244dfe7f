"""The synthetic imaging exams and ECGs: readable by pydicom / wfdb, deterministic, rhythms that a
beat detector confirms, and defects that are really there."""
from __future__ import annotations

import datetime as dt

import neurokit2 as nk
import numpy as np
import pydicom
import pytest
import wfdb

from ingest.connectors import media_files
from ingest.simulator import media
from ingest.simulator.media import EcgExam, ImagingExam, PatientIdentity

PATIENT = PatientIdentity("R000123", "欧阳秀英", "350921195803120027", "2", dt.date(1958, 3, 12))
WHEN = dt.datetime(2025, 12, 23, 9, 41, 5)
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _exam(modality, body_part="CHEST", defect=None, accession="A20251223001"):
    return ImagingExam(accession, "REQ-IMG-1", "H350921001", "屏南县医院", modality, body_part, WHEN, defect)


def _ecg(rhythm="sinus", hr=72, fmt="dicom", defect=None, noise=0.03, request_id="ECG20251223001"):
    return EcgExam(request_id, "H350921001", "屏南县医院", WHEN, rhythm, hr, noise, fmt, defect)


def _signals(paths, fmt):
    if fmt == "dicom":
        ds = pydicom.dcmread(paths[0])
        return ds.waveform_array(0) / 1000.0, ds  # µV → mV
    rec = wfdb.rdrecord(str(paths[0].with_suffix("")))
    return rec.p_signal, rec


def _rr(signal_ii):
    clean = nk.ecg_clean(signal_ii, sampling_rate=500)
    _, info = nk.ecg_peaks(clean, sampling_rate=500)
    return np.diff(info["ECG_R_Peaks"]) / 500.0


@pytest.mark.parametrize("modality,body_part,sop_class,n_range", [
    ("DX", "CHEST", "1.2.840.10008.5.1.4.1.1.1.1", (1, 2)),
    ("CR", "CHEST", "1.2.840.10008.5.1.4.1.1.1", (1, 2)),
    ("CT", "CHEST", "1.2.840.10008.5.1.4.1.1.2", (8, 16)),
    ("CT", "HEAD", "1.2.840.10008.5.1.4.1.1.2", (8, 16)),
    ("MR", "HEAD", "1.2.840.10008.5.1.4.1.1.4", (6, 12)),
])
def test_imaging_studies_read_back_with_identity_and_pixels(tmp_path, modality, body_part, sop_class, n_range):
    paths = media.write_imaging_exam(tmp_path, PATIENT, _exam(modality, body_part), seed=11)
    assert n_range[0] <= len(paths) <= n_range[1]
    assert [p.name for p in paths] == [f"{n}.dcm" for n in range(1, len(paths) + 1)]
    assert all(p.parent == tmp_path / "H350921001" / "A20251223001" for p in paths)
    sops, series = set(), set()
    for p in paths:
        ds = pydicom.dcmread(p)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == sop_class == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "欧阳秀英"
        assert ds.PatientID == "R000123" and ds.PatientSex == "F" and ds.PatientBirthDate == "19580312"
        assert ds.OtherPatientIDsSequence[0].PatientID == "350921195803120027"
        assert ds.AccessionNumber == "A20251223001" and ds.Modality == modality
        assert ds.BodyPartExamined == body_part and ds.InstitutionName == "屏南县医院"
        assert ds.StudyDate == "20251223" and ds.StudyTime == "094105"
        px = ds.pixel_array
        assert 64 <= min(px.shape[-2:]) and max(px.shape[-2:]) <= 256
        assert px.std() > 0.05 * (px.max() - px.min()) > 0  # content, not a constant image
        if modality in ("CT", "DX"):
            assert "WindowCenter" in ds and "WindowWidth" in ds
        if modality == "CT":
            hu = px * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert hu.min() < -900 and hu.max() > 300  # air and bone
        sops.add(ds.SOPInstanceUID)
        series.add(ds.SeriesInstanceUID)
        assert ds.StudyInstanceUID == pydicom.dcmread(paths[0]).StudyInstanceUID
    assert len(sops) == len(paths)
    if modality in ("CT", "MR"):
        assert len(series) == 1


def test_ultrasound_and_cr_variants_occur_across_exams(tmp_path):
    photometric, us_classes = set(), set()
    for k in range(12):
        for modality in ("CR", "US"):
            exam = _exam(modality, "ABDOMEN" if modality == "US" else "CHEST", accession=f"A{modality}{k}")
            for p in media.write_imaging_exam(tmp_path, PATIENT, exam, seed=k):
                ds = pydicom.dcmread(p)
                photometric.add((modality, ds.PhotometricInterpretation))
                if modality == "US":
                    us_classes.add(ds.SOPClassUID)
                    assert ds.pixel_array.std() > 0
    assert ("CR", "MONOCHROME1") in photometric and ("CR", "MONOCHROME2") in photometric
    assert ("US", "RGB") in photometric
    assert us_classes == {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1"}


def test_imaging_is_byte_deterministic_and_seed_dependent(tmp_path):
    a = media.write_imaging_exam(tmp_path / "a", PATIENT, _exam("CT"), seed=5)
    b = media.write_imaging_exam(tmp_path / "b", PATIENT, _exam("CT"), seed=5)
    c = media.write_imaging_exam(tmp_path / "c", PATIENT, _exam("CT"), seed=6)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != c[0].read_bytes()
    assert pydicom.dcmread(a[0]).StudyInstanceUID != pydicom.dcmread(c[0]).StudyInstanceUID


def test_truncated_dicom_is_cut_inside_the_pixel_data(tmp_path):
    paths = media.write_imaging_exam(tmp_path, PATIENT, _exam("CT", defect="truncated_dicom"), seed=3)
    last = pydicom.dcmread(paths[-1])  # the header still parses
    assert last.Rows == 128 and len(last.PixelData) < last.Rows * last.Columns * 2
    with pytest.raises(ValueError):
        last.pixel_array
    assert all(pydicom.dcmread(p).pixel_array.shape == (128, 128) for p in paths[:-1])
    assert media_files.inspect_dicom_image(paths[-1])["__reason"] == "truncated_dicom"
    assert media_files.inspect_dicom_image(paths[0])["__reason"] is None


@pytest.mark.parametrize("fmt", ["dicom", "wfdb"])
def test_ecg_reads_back_as_12_leads_at_500_hz(tmp_path, fmt):
    paths = media.write_ecg(tmp_path, PATIENT, _ecg(fmt=fmt), seed=1)
    folder = tmp_path / "H350921001"
    if fmt == "dicom":
        assert paths == [folder / "ECG20251223001.dcm"]
        ds = pydicom.dcmread(paths[0])
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1" and ds.Modality == "ECG"
        assert str(ds.PatientName) == "欧阳秀英" and ds.PatientID == "R000123"
        group = ds.WaveformSequence[0]
        assert float(group.SamplingFrequency) == 500 and group.NumberOfWaveformSamples == 5000
        assert group.WaveformBitsAllocated == 16 and group.WaveformSampleInterpretation == "SS"
        codes = [c.ChannelSourceSequence[0] for c in group.ChannelDefinitionSequence]
        assert all(c.CodingSchemeDesignator == "SCPECG" for c in codes)
        assert [media_files.SCPECG_LEADS[c.CodeValue] for c in codes] == LEADS
        assert {c.ChannelSensitivityUnitsSequence[0].CodeValue for c in group.ChannelDefinitionSequence} == {"uV"}
        raw = ds.waveform_array(0)
    else:
        assert paths == [folder / "ECG20251223001.hea", folder / "ECG20251223001.dat"]
        rec = wfdb.rdrecord(str(paths[0].with_suffix("")))
        assert rec.sig_name == LEADS and rec.fs == 500 and rec.fmt == ["16"] * 12
        assert rec.units == ["mV"] * 12
        assert "patient_id: R000123" in rec.comments
        assert "# name: 欧阳秀英" in paths[0].read_text(encoding="utf-8")
        raw = rec.p_signal
    assert raw.shape == (5000, 12)
    sig, _ = _signals(paths, fmt)
    # Einthoven: III = II - I, aVR = -(I + II) / 2 (within quantisation)
    assert np.abs(sig[:, 2] - (sig[:, 1] - sig[:, 0])).max() < 0.01
    assert np.abs(sig[:, 3] + (sig[:, 0] + sig[:, 1]) / 2).max() < 0.01
    assert 0.5 < np.ptp(sig[:, 1]) < 5  # mV: a QRS, not noise, not a saturated channel


@pytest.mark.parametrize("rhythm,hr", [("sinus", 72), ("brady", 46), ("tachy", 128)])
@pytest.mark.parametrize("fmt", ["dicom", "wfdb"])
def test_regular_rhythms_have_the_requested_heart_rate(tmp_path, rhythm, hr, fmt):
    sig, _ = _signals(media.write_ecg(tmp_path, PATIENT, _ecg(rhythm, hr, fmt), seed=2), fmt)
    rr = _rr(sig[:, 1])
    assert abs(60 / np.median(rr) - hr) <= 0.08 * hr
    assert rr.std() / rr.mean() < 0.08  # regular


def test_afib_is_irregularly_irregular(tmp_path):
    for seed in range(3):
        sig, _ = _signals(media.write_ecg(tmp_path, PATIENT, _ecg("afib", 95, "wfdb", request_id=f"AF{seed}"),
                                          seed=seed), "wfdb")
        rr = _rr(sig[:, 1])
        assert rr.std() / rr.mean() > 0.12
        assert np.sqrt(np.mean(np.diff(rr) ** 2)) / rr.mean() > 0.12  # beat-to-beat, not a slow drift
        assert abs(60 / rr.mean() - 95) < 20


def test_pvc_inserts_premature_wide_beats_with_a_compensatory_pause(tmp_path):
    paths = media.write_ecg(tmp_path, PATIENT, _ecg("pvc", 70, "dicom"), seed=4)
    sig, _ = _signals(paths, "dicom")
    # the ectopic beats are seen best in V5/V6 and aVL; use the lead with the largest range
    lead = int(np.argmax(np.ptp(sig, axis=0)))
    rr = _rr(sig[:, lead])
    base = np.median(rr)
    short = np.where(rr < 0.75 * base)[0]
    assert len(short) >= 1
    i = short[0]
    assert i + 1 < len(rr) and rr[i + 1] > 1.2 * base  # compensatory pause after the premature beat


@pytest.mark.parametrize("fmt", ["dicom", "wfdb"])
def test_pause_has_an_rr_longer_than_two_seconds(tmp_path, fmt):
    sig, _ = _signals(media.write_ecg(tmp_path, PATIENT, _ecg("pause", 75, fmt), seed=8), fmt)
    rr = _rr(sig[:, 1])
    assert rr.max() > 2.0 and np.median(rr) < 1.0


@pytest.mark.parametrize("fmt", ["dicom", "wfdb"])
def test_flatline_is_flat(tmp_path, fmt):
    sig, _ = _signals(media.write_ecg(tmp_path, PATIENT, _ecg(fmt=fmt, defect="flatline_ecg"), seed=1), fmt)
    assert sig.shape == (5000, 12)
    assert (sig.std(axis=0) < 0.01).all() and (np.ptp(sig, axis=0) < 0.1).all()


def test_truncated_ecg_is_detectably_short(tmp_path):
    d = media.write_ecg(tmp_path, PATIENT, _ecg(fmt="dicom", defect="truncated_ecg", request_id="T1"), seed=1)
    group = pydicom.dcmread(d[0]).WaveformSequence[0]
    assert len(group.WaveformData) < group.NumberOfWaveformChannels * group.NumberOfWaveformSamples * 2
    w = media.write_ecg(tmp_path, PATIENT, _ecg(fmt="wfdb", defect="truncated_ecg", request_id="T2"), seed=1)
    header = wfdb.rdheader(str(w[0].with_suffix("")))
    assert w[1].stat().st_size < header.n_sig * header.sig_len * 2
    with pytest.raises(Exception):
        wfdb.rdrecord(str(w[0].with_suffix("")))
    assert media_files.inspect_dicom_ecg(d[0])["__reason"] == "truncated_ecg"
    assert media_files.inspect_wfdb(w[0], [w[1]])["__reason"] == "truncated_ecg"


@pytest.mark.parametrize("fmt", ["dicom", "wfdb"])
def test_ecg_is_byte_deterministic(tmp_path, fmt):
    exam = _ecg("afib", 90, fmt, noise=0.1)
    a = media.write_ecg(tmp_path / "a", PATIENT, exam, seed=9)
    b = media.write_ecg(tmp_path / "b", PATIENT, exam, seed=9)
    c = media.write_ecg(tmp_path / "c", PATIENT, exam, seed=10)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[-1].read_bytes() != c[-1].read_bytes()


def test_unknown_values_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        media.write_ecg(tmp_path, PATIENT, _ecg(fmt="scp"), seed=1)
    with pytest.raises(ValueError):
        media.write_ecg(tmp_path, PATIENT, _ecg(rhythm="vfib"), seed=1)
    with pytest.raises(ValueError):
        media.write_imaging_exam(tmp_path, PATIENT, _exam("PET"), seed=1)
