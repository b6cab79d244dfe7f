"""`lakehouse imaging inspect`: the pipeline's own parsing, thumbnail and de-identification code on
every shared DICOM file (and a file missing its File Meta), file by file."""
from __future__ import annotations

import shutil

import pytest

from lakehouse.settings import REPO_ROOT, load_settings
from spark_jobs.imaging.inspect import inspect_dir

SHARED_DICOM = REPO_ROOT.parent / "shared" / "data" / "dicom"
EXPECTED = {   # file → (status, reason)
    "CT_small.dcm": ("ok", None), "MR_small.dcm": ("ok", None), "MR_enhanced_multiframe.dcm": ("ok", None),
    "CR_small_16x16.dcm": ("ok", None), "CR_RG3_jpeg2000.dcm": ("ok", None),
    "US_palette_OBXXXX1A.dcm": ("ok", None), "NM_jpeg_lossless.dcm": ("ok", None),
    "ECG_12lead_waveform.dcm": ("ok", None), "problematic/MR_small_bigendian.dcm": ("ok", None),
    "problematic/deflated_image_dfl.dcm": ("ok", None),
    "problematic/MR_truncated.dcm": ("quarantined", "truncated_pixel_data"),
    "problematic/no_meta_stray_byte.dcm": ("quarantined", "not_dicom"),
    "extra/CT_small_no_meta.dcm": ("repaired", None),
}


@pytest.fixture(scope="module")
def inspected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom")
    shutil.copytree(SHARED_DICOM, folder, dirs_exist_ok=True)
    (folder / "extra").mkdir()
    # the data set alone, from its first element: no preamble, no File Meta Information
    (folder / "extra" / "CT_small_no_meta.dcm").write_bytes((SHARED_DICOM / "CT_small.dcm").read_bytes()[336:])
    key = load_settings({"JL_ENV": "CI", "JL_HOME": str(folder)}).deid_key
    return folder, inspect_dir(folder, key)


def test_every_file_gets_its_status_and_reason(inspected):
    folder, result = inspected
    got = {str(r["file"]).removeprefix(f"{folder}/"): (r["status"], r["reason"]) for r in result["files"]}
    assert got == EXPECTED
    repaired = next(r for r in result["files"] if r["status"] == "repaired")
    assert repaired["repairs"] == "added_file_meta" and repaired["modality"] == "CT" and repaired["thumbnail"]


def test_every_readable_image_gets_a_thumbnail_and_nothing_identifying_survives(inspected):
    _, result = inspected
    for r in result["files"]:
        if r["status"] == "quarantined":
            assert not r["thumbnail"] and not r["deidentified"]
            continue
        assert r["deidentified"] and r["surviving_identifiers"] == [], r
        if r["modality"] == "ECG":
            assert (r["thumbnail"], r["thumbnail_reason"]) == (False, "no_pixel_data")
        else:
            assert r["thumbnail"] and r["thumbnail_bytes"] > 100, r
    frames = {str(r["file"]).rsplit("/", 1)[-1]: r["frames"] for r in result["files"]}
    assert frames["MR_enhanced_multiframe.dcm"] == 10 and frames["ECG_12lead_waveform.dcm"] == 0
    assert result["totals"] == {"ok": 10, "repaired": 1, "quarantined": 2, "thumbnails": 10,
                                "with_surviving_identifiers": 0}


def test_the_header_scan_and_dcmread_give_the_same_row_for_every_file(inspected, tmp_path):
    """The fast reader (pydicom's element generator, no Dataset) must catalogue every file exactly
    as ``dcmread`` does, and leave to ``dcmread`` the files it is not meant for."""
    import datetime as dt

    import pydicom

    from ingest.simulator import media
    from spark_jobs.imaging import parse

    folder, _ = inspected
    patient = media.PatientIdentity("P1", "测试", "110101199003071234", "2", dt.date(1958, 5, 1))
    for i, modality in enumerate(media.MODALITIES):
        exam = media.ImagingExam(f"A{i}", f"R{i}", "H1", "卫生院", modality, "CHEST", dt.datetime(2025, 1, 2, 9))
        media.write_imaging_exam(folder / "simulated", patient, exam, seed=i)
    ct = (SHARED_DICOM / "CT_small.dcm").read_bytes()
    (folder / "extra" / "CT_cut_in_header.dcm").write_bytes(ct[:700])
    (folder / "extra" / "CT_cut_in_pixels.dcm").write_bytes(ct[:-1000])
    big = pydicom.dcmread(SHARED_DICOM / "CT_small.dcm")   # a header longer than the scan's first read
    big.private_block(0x0009, "JIceng test", create=True).add_new(0x10, "OB", bytes(3 * parse.HEAD_BYTES))
    big.save_as(folder / "extra" / "CT_big_private_header.dcm")
    files = sorted(p for p in folder.rglob("*.dcm"))
    scanned = [p for p in files if parse._scan(str(p)) is not None]
    names = {p.name for p in scanned}
    assert {"CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "NM_jpeg_lossless.dcm"} <= names
    assert not names & {"deflated_image_dfl.dcm", "no_meta_stray_byte.dcm", "CT_small_no_meta.dcm"}
    assert len(scanned) >= len(files) - 5, sorted(set(files) - set(scanned))

    fast = {p: parse.parse_file(str(p)) for p in files}
    original = parse._scan
    parse._scan = lambda path: None
    try:
        slow = {p: parse.parse_file(str(p)) for p in files}
    finally:
        parse._scan = original
    assert fast == slow
    assert fast[folder / "extra" / "CT_cut_in_pixels.dcm"]["reason"] == "truncated_pixel_data"
    assert fast[folder / "extra" / "CT_big_private_header.dcm"]["status"] == "ok"
    assert fast[folder / "extra" / "CT_big_private_header.dcm"]["pixel_bytes"] == 128 * 128 * 2
