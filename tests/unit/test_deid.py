"""De-identification of DICOM images leaving their institution, checked attribute by attribute
against PS3.15 Table E.1-1: every table row on its own, the sample files, and a synthetic study
full of identifying attributes (names, IDs, addresses, UIDs, dates, private and nested data)."""
from __future__ import annotations

import copy
import datetime as dt
import io
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from spark_jobs.imaging.deid import (burned_in_risk, deidentify, load_profile,
                                     surviving_identifiers, walk)

KEY = b"unit-test-key-not-a-secret-0123"
DICOM_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "dicom"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
TEXT_VRS = {"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
# Patient Identity Removed, De-identification Method (+ Code Sequence), Longitudinal Temporal Info
DEID_MARKERS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}
UID_RE = re.compile(r"^2\.25\.[1-9][0-9]*$")


def _readable_files() -> list[Path]:
    files = []
    for path in sorted(DICOM_DIR.rglob("*.dcm")):
        try:
            pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        files.append(path)
    return files


def _expected_action(action: str | None, vr: str, tag: int) -> str | None:
    """The documented rule: the last alternative of a compound action (valid whatever the type);
    sequences prefer U*, then Z, then D; D on a UID is U, D on a time is kept (whole-day shift);
    patient name and ID get the pseudonym."""
    if tag in (0x00100010, 0x00100020):
        return "D"
    if action is None:
        return None
    options = action.split("/")
    if vr == "SQ":
        return next(a for a in ("U*", "Z", "D", "X") if a in options)
    choice = {"U*": "U" if vr == "UI" else "Z"}.get(options[-1], options[-1])
    return {("D", "UI"): "U", ("D", "TM"): "C"}.get((choice, vr), choice)


def _action_of(tag: int) -> str | None:
    profile = load_profile()
    exact = profile.get(f"{tag:08x}")
    if exact:
        return exact
    text = f"{tag:08x}"
    return next((a for p, a in profile.items() if "x" in p
                 and all(c == "x" or c == t for c, t in zip(p, text))), None)


def _values(elem) -> list:
    return list(elem.value) if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]


def _shifted(value: str, days: int) -> str:
    day = dt.datetime.strptime(value[:8], "%Y%m%d").date() + dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + value[8:]


def _assert_follows_profile(orig: Dataset, out: Dataset, shift: int, path: str = "") -> None:
    """Every element of ``orig`` has met its Table E.1-1 fate in ``out`` (recursing into the
    sequences that are kept)."""
    for elem in orig:
        where = f"{path}{elem.tag} {elem.keyword}"
        if elem.tag.is_private:
            assert elem.tag not in out, f"{where}: private attribute survived"
            continue
        action = _expected_action(_action_of(elem.tag), elem.VR, elem.tag)
        if action == "X":
            assert elem.tag not in out, f"{where}: X but present"
            continue
        assert elem.tag in out, f"{where}: {action} but removed"
        new = out[elem.tag]
        if elem.tag in DEID_MARKERS:  # an earlier de-identification: ours is recorded after it
            assert _values(new)[:len(_values(elem))] == _values(elem) or elem.tag in (0x00120062, 0x00280303)
        elif action in (None, "U*") and elem.VR == "SQ":
            assert len(new.value) == len(elem.value), where
            for i, (a, b) in enumerate(zip(elem.value, new.value)):
                _assert_follows_profile(a, b, shift, f"{where}[{i}].")
        elif action in (None, "C"):
            assert new.value == elem.value, f"{where}: should be kept"
        elif action == "Z":
            assert new.is_empty or (elem.VR == "SQ" and len(new.value) == 0), f"{where}: Z but {new.value!r}"
        elif action == "U" and not elem.is_empty:
            for old_uid, new_uid in zip(_values(elem), _values(new)):
                assert UID_RE.match(new_uid) and len(new_uid) <= 64 and new_uid != old_uid, where
        elif elem.tag == 0x00100020:
            assert new.value and new.value != elem.value, where
        elif elem.tag == 0x00100010:
            assert str(new.value) == f"ANONYMOUS^{out.PatientID}", where
        elif action == "D" and not elem.is_empty:
            if elem.VR in ("DA", "DT"):
                assert _values(new) == [_shifted(v, shift) for v in _values(elem)], where
            elif elem.VR == "SQ":
                assert len(new.value) == len(elem.value), where
                for _, inner in (x for item in new.value for x in walk(item)):
                    if inner.VR in TEXT_VRS and not inner.is_empty:
                        assert inner.value in ("ANONYMIZED", "ANONYMOUS"), f"{where}: {inner}"
            else:
                assert new.value != elem.value, f"{where}: D but unchanged"


def _strings(ds: Dataset) -> set[str]:
    found = set()
    for _, elem in walk(ds):
        if elem.VR != "SQ" and not elem.is_empty:
            found.update(str(v) for v in _values(elem))
    return found


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _synthetic(patient_id="PN-0012345", name="王^小明", study="1.2.826.0.1.3680043.9.7.1",
               series="1.2.826.0.1.3680043.9.7.1.1", sop="1.2.826.0.1.3680043.9.7.1.1.1",
               referenced_sop="1.2.826.0.1.3680043.9.7.1.1.2", content_date="20240315") -> Dataset:
    """A CT image header carrying many Table E.1-1 attributes, private data and nested sequences."""
    ds = _item(
        SpecificCharacterSet="ISO_IR 192", SOPClassUID=CT_IMAGE, SOPInstanceUID=sop, Modality="CT",
        StudyInstanceUID=study, SeriesInstanceUID=series, FrameOfReferenceUID=study + ".9",
        PatientName=name, PatientID=patient_id, IssuerOfPatientID="PINGNAN-HIS", PatientBirthDate="19580312",
        PatientSex="F", PatientAge="066Y", PatientAddress="屏南县古峰镇解放路1号",
        PatientTelephoneNumbers="13800000000", OtherPatientIDs="350923195803120021", EthnicGroup="汉族",
        PatientWeight="61.5", InstitutionName="屏南县医院", InstitutionAddress="古峰镇",
        InstitutionalDepartmentName="放射科", StationName="CT-ROOM-2", ReferringPhysicianName="李^医生",
        PerformingPhysicianName="张^医生", OperatorsName="陈^技师", NameOfPhysiciansReadingStudy="刘^医生",
        PhysiciansOfRecord="赵^医生", AccessionNumber="A2024031500017", StudyID="17",
        StudyDate="20240315", StudyTime="091500", SeriesDate="20240314", SeriesTime="091700",
        ContentDate=content_date, ContentTime="091800", AcquisitionDateTime="20240315091800.000000+0800",
        InstanceCreationDate="20240315", Manufacturer="ACME", DeviceSerialNumber="SN-778899",
        ProtocolName="HEAD ROUTINE 王", StudyDescription="头颅平扫 王小明", SeriesDescription="AXIAL",
        ImageComments="patient 王小明 moved", RequestedProcedureDescription="CT HEAD",
        BurnedInAnnotation="NO", ImageType=["ORIGINAL", "PRIMARY", "AXIAL"])
    ds.ReferencedImageSequence = Sequence([_item(
        ReferencedSOPClassUID=CT_IMAGE, ReferencedSOPInstanceUID=referenced_sop, InstitutionName="屏南县医院")])
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID="OLD-42", IssuerOfPatientID="OLD-HIS")])
    ds.RequestAttributesSequence = Sequence([_item(RequestedProcedureID="RP-9",
                                                   ScheduledProcedureStepID="SPS-9")])
    ds.ProcedureCodeSequence = Sequence([_item(
        CodeValue="CTHEAD", CodingSchemeDesignator="99PN", CodeMeaning="CT head",
        ReferringPhysicianName="李^医生", StudyInstanceUID=study)])
    ds.ProcedureCodeSequence[0].add_new(0x00290010, "LO", "ACME 1.0")
    ds.ProcedureCodeSequence[0].add_new(0x00291001, "LO", "nested private 王小明")
    ds.OperatorIdentificationSequence = Sequence([_item(
        PersonAddress="屏南县", InstitutionName="屏南县医院",
        PersonIdentificationCodeSequence=Sequence([_item(
            CodeValue="EMP-001", CodingSchemeDesignator="L", CodeMeaning="陈技师")]))])
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", "private copy of 王小明")
    ds.add_new(0x00091002, "DA", "19580312")
    ds.add_new(0x50003000, "OB", b"\x00\x01")        # retired curve data
    ds.add_new(0x60000010, "US", 2)                  # overlay rows
    ds.add_new(0x60003000, "OW", b"\x00\x00")        # overlay data
    ds.add_new(0x60004000, "LT", "王小明 overlay")   # overlay comments
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 4)        # data set trailing padding
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CT_IMAGE, sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


# ---- the table itself --------------------------------------------------------------------------------

def test_profile_holds_the_whole_table_with_its_actions():
    profile = load_profile()
    assert len(profile) >= 600
    assert set(profile.values()) <= {"X", "Z", "D", "U", "K", "C", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    well_known = {"00100010": "Z", "00101040": "X", "0020000d": "U", "00080080": "X/Z/D",
                  "00081140": "X/Z/U*", "00080050": "Z", "00100030": "Z", "00080090": "Z",
                  "50xxxxxx": "X", "60xx3000": "X", "60xx4000": "X", "fffcfffc": "X"}
    assert {tag: profile.get(tag) for tag in well_known} == well_known
    assert "00080016" not in profile and "00080060" not in profile  # SOP Class UID, Modality: kept


def _value_for(vr: str, n: int):
    if vr in TEXT_VRS or vr == "CS":
        return "SECRET"
    if vr == "SQ":
        return Sequence([_item(CodeValue="SECRETCODE", CodingSchemeDesignator="L", CodeMeaning="SECRET")])
    return {"AS": "045Y", "DA": "20200102", "DT": "20200102101010", "TM": "101010", "UI": f"1.2.826.0.1.{n}",
            "IS": "7", "DS": "7.5", "UR": "http://example.org/SECRET", "AT": 0x00100010}.get(
        vr, b"\x01\x02" if vr in BINARY_VRS else 7)


def _one_attribute_cases():
    for n, (tag_text, action) in enumerate(sorted(load_profile().items())):
        tag = int(tag_text.replace("x", "0"), 16) | (0x10 if tag_text == "50xxxxxx" else 0)
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        yield pytest.param(tag, vr, action, n, id=f"{tag_text}-{action}")


@pytest.mark.parametrize(("tag", "vr", "action", "n"), list(_one_attribute_cases()))
def test_each_table_attribute_gets_its_action(tag, vr, action, n):
    ds = Dataset()
    ds.add_new(tag, vr, _value_for(vr, n))
    result = deidentify(ds, key=KEY, patient_key="patient-1")
    _assert_follows_profile(ds, result.dataset, result.date_shift_days)
    if tag not in (0x00100010, 0x00100020):  # those two are added (type 2) whatever the input
        assert tag in result.dataset or _expected_action(action, vr, tag) == "X"
    assert surviving_identifiers(ds, result.dataset) == []
    expected = _expected_action(action, vr, tag)
    if expected == "X" or (vr != "SQ" and expected != "C"):  # kept times / cleaned sequences: no value
        assert surviving_identifiers(ds, ds), "the check must be able to fail"


# ---- real files and a synthetic study ----------------------------------------------------------------

SAMPLE_FILES = _readable_files() or [pytest.param(None, marks=pytest.mark.skip("no sample files"))]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name if p else "none")
def test_sample_file_is_deidentified_attribute_by_attribute(path):
    original = pydicom.dcmread(path)
    before = copy.deepcopy(original)
    result = deidentify(original, key=KEY, patient_key=str(original.get("PatientID", "")))
    out = result.dataset
    assert original == before, "the input must not change"
    _assert_follows_profile(original, out, result.date_shift_days)
    assert not any(elem.tag.is_private for _, elem in walk(out))
    assert surviving_identifiers(original, original), "the check must be able to fail"
    assert surviving_identifiers(original, out) == []
    assert out.PatientIdentityRemoved == "YES"
    assert "113100" in {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != original.SOPInstanceUID
    assert _roundtrip(out).SOPInstanceUID == out.SOPInstanceUID


def test_synthetic_study_loses_every_identifier():
    original = _synthetic()
    result = deidentify(original, key=KEY, patient_key="person-1")
    out = result.dataset
    _assert_follows_profile(original, out, result.date_shift_days)
    assert surviving_identifiers(original, out) == []
    assert len(surviving_identifiers(original, original)) > 30
    leaked = {"王^小明", "PN-0012345", "屏南县医院", "屏南县古峰镇解放路1号", "13800000000", "李^医生",
              "A2024031500017", "19580312", "OLD-42", "EMP-001", "陈技师", "SN-778899", "20240315"}
    assert not leaked & _strings(out)
    assert not any("王小明" in s for s in _strings(out))
    # nested: kept sequences are cleaned inside, removed ones are gone, D sequences hold dummies
    assert out.ProcedureCodeSequence[0].ReferringPhysicianName == ""
    assert out.ProcedureCodeSequence[0].CodeMeaning == "CT head"
    assert out.ProcedureCodeSequence[0].StudyInstanceUID == out.StudyInstanceUID
    assert "OtherPatientIDsSequence" not in out and "RequestAttributesSequence" not in out
    code = out.OperatorIdentificationSequence[0].PersonIdentificationCodeSequence[0]
    assert (code.CodeValue, code.CodeMeaning) == ("ANONYMIZED", "ANONYMIZED")
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == CT_IMAGE
    # curves, overlay data / comments, trailing padding: removed; dates moved, times kept
    assert not {0x50003000, 0x60003000, 0x60004000, 0xFFFCFFFC} & {e.tag for e in out}
    assert (out.StudyDate, out.AccessionNumber, out.PatientBirthDate) == ("", "", "")
    assert out.SeriesTime == "091700" and out.ContentTime == "091800"
    assert out.AcquisitionDateTime.endswith("091800.000000+0800")
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert {"113100", "113107"} <= {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert _roundtrip(out).PatientName == out.PatientName


def test_uids_map_the_same_way_across_files_runs_and_references():
    first = deidentify(_synthetic(), key=KEY, patient_key="person-1").dataset
    sop1, sop2 = "1.2.826.0.1.3680043.9.7.1.1.1", "1.2.826.0.1.3680043.9.7.1.1.2"
    second = deidentify(_synthetic(sop=sop2, referenced_sop=sop1), key=KEY, patient_key="person-1").dataset
    again = deidentify(_synthetic(), key=KEY, patient_key="person-1").dataset
    other_key = deidentify(_synthetic(), key=b"another-key", patient_key="person-1").dataset
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.ReferencedImageSequence[0].ReferencedSOPInstanceUID == second.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert again.SOPInstanceUID == first.SOPInstanceUID
    assert again.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert other_key.StudyInstanceUID != first.StudyInstanceUID
    for uid in (first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID):
        assert UID_RE.match(uid) and len(uid) <= 64


def test_dates_shift_per_patient_and_keep_intervals():
    a1 = deidentify(_synthetic(content_date="20240315"), key=KEY, patient_key="person-1")
    a2 = deidentify(_synthetic(content_date="20240420"), key=KEY, patient_key="person-1")
    b = deidentify(_synthetic(content_date="20240315"), key=KEY, patient_key="person-2")
    assert a1.date_shift_days == a2.date_shift_days != b.date_shift_days

    def day(value: str) -> dt.date:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date()

    assert (day(a2.dataset.ContentDate) - day(a1.dataset.ContentDate)).days == 36
    assert (day(a1.dataset.ContentDate) - day(a1.dataset.SeriesDate)).days == 1
    assert day(a1.dataset.ContentDate) != day("20240315")
    shifts = {deidentify(Dataset(), key=KEY, patient_key=f"p{i}").date_shift_days for i in range(300)}
    assert min(shifts) >= -365 and max(shifts) <= -1 and len(shifts) > 100


def test_patient_pseudonym_is_stable_and_keyed():
    one = deidentify(_synthetic(), key=KEY, patient_key="person-1").dataset
    two = deidentify(_synthetic(content_date="20240101"), key=KEY, patient_key="person-1").dataset
    other = deidentify(_synthetic(patient_id="PN-0099999"), key=KEY, patient_key="person-9").dataset
    assert one.PatientID == two.PatientID != other.PatientID
    assert str(one.PatientName) == f"ANONYMOUS^{one.PatientID}"


def test_reidentification_map_is_returned_but_not_stored_in_the_dataset():
    original = _synthetic()
    result = deidentify(original, key=KEY, patient_key="person-1")
    rows = {(r.kind, r.original): r.replacement for r in result.reid_map}
    assert rows[("patient_id", "PN-0012345")] == result.dataset.PatientID
    assert rows[("uid", original.StudyInstanceUID)] == result.dataset.StudyInstanceUID
    assert rows[("date_shift_days", "person-1")] == str(result.date_shift_days)
    assert not {r.original for r in result.reid_map} & _strings(result.dataset)
    taken = {a.path: (a.action, a.original_hash) for a in result.actions}
    assert taken["(0010,1040)"][0] == "X" and taken["(0009,1001)"][0] == "X"
    assert taken["(0008,1032)[0].(0008,0090)"][0] == "Z"
    assert taken["(0010,0010)"][1] and "王" not in taken["(0010,0010)"][1]


def test_surviving_identifiers_reports_leaks():
    original = _synthetic()
    out = deidentify(original, key=KEY, patient_key="person-1").dataset
    out.AccessionNumber = original.AccessionNumber                 # same attribute
    out.ImageComments = "PN-0012345"                               # patient ID copied elsewhere
    out.ProcedureCodeSequence[0].add_new(0x00290010, "LO", "ACME")  # nested private attribute
    found = "\n".join(surviving_identifiers(original, out))
    assert "(0008,0050)" in found and "AccessionNumber" in found
    assert "(0020,4000)" in found and "(0010,0020)" in found
    assert "private" in found


# ---- burned-in annotation risk and the key -----------------------------------------------------------

def test_burned_in_annotation_risk_is_flagged():
    assert burned_in_risk(_item(Modality="CT", BurnedInAnnotation="NO", SOPClassUID=CT_IMAGE)) == (False, "")
    assert "overlay" in deidentify(_synthetic(), key=KEY, patient_key="p").burned_in_reason
    yes = _synthetic()
    yes.BurnedInAnnotation = "YES"
    assert deidentify(yes, key=KEY, patient_key="p").burned_in_risk
    us = _item(Modality="US", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1")
    risky, reason = burned_in_risk(us)
    assert risky and "absent" in reason
    us.BurnedInAnnotation = "NO"
    assert burned_in_risk(us) == (False, "")
    assert burned_in_risk(_item(Modality="OT", SOPClassUID=SC_IMAGE, BurnedInAnnotation="NO"))[0]
    assert burned_in_risk(_item(Modality="DX", ImageType=["DERIVED", "PRIMARY"]))[0]
    assert not burned_in_risk(_item(Modality="MR", ImageType=["DERIVED", "SECONDARY"]))[0]


def test_key_comes_from_the_environment_and_prod_needs_its_own():
    from lakehouse.settings import SettingsError, load_settings

    base = {"JL_HOME": "/tmp/x", "JL_PSEUDONYM_KEY": "p-from-vault"}
    with pytest.raises(SettingsError, match="JL_DEID_KEY"):
        load_settings({**base, "JL_ENV": "PROD"})
    assert load_settings({**base, "JL_ENV": "PROD", "JL_DEID_KEY": "from-vault"}).deid_key == b"from-vault"
    dev = load_settings({**base, "JL_ENV": "CI"}).deid_key
    with pytest.raises(SettingsError, match="JL_DEID_KEY"):
        load_settings({**base, "JL_ENV": "PROD", "JL_DEID_KEY": dev.decode()})
