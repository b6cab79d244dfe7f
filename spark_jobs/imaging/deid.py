"""De-identification of DICOM images that leave their institution (reading centre, export).

Applies the Basic Application Level Confidentiality Profile of DICOM PS3.15 Annex E: the actions of
Table E.1-1 (edition 2024b, transcribed in ``basic_profile.csv`` beside this module) on a copy of a
pydicom Dataset, with

- UIDs (action U) remapped to ``2.25.<128-bit int>`` from HMAC(key, UID): the same UID maps to the
  same new UID in every file and every run, so study / series / instance and cross references hold;
- the patient ID replaced by an HMAC pseudonym of the original ID, the name by ``ANONYMOUS^<it>``
  (Z allows a non-zero-length dummy value);
- dates of D attributes shifted by a per-patient whole number of days in [-365, -1] from
  HMAC(key, patient_key), so intervals within one patient survive (option 113107); times are kept,
  which a whole-day shift leaves consistent;
- private attributes removed (the basic profile keeps none);
- a burned-in annotation risk flag, since the profile cannot clean pixel data.

Compound actions. The IOD type of an attribute is not known here, so the alternative that is valid
whatever the type is taken: the last one listed (X/Z → Z, X/D → D, Z/D → D, X/Z/D → D), except that
a sequence prefers U* (keep the items, remap their UIDs), then Z (an empty sequence), then D.
D on a sequence keeps its items but cleans them and puts dummies in every free-text value.

The re-identification map (original → replacement UIDs, patient ID → pseudonym, date shift) is
returned beside the dataset for the restricted layer; nothing of it is written into the dataset.
The HMAC key comes from the environment, ``JL_DEID_KEY``, through
:attr:`lakehouse.settings.Settings.deid_key` (PROD refuses to start without a key of its own).
"""
from __future__ import annotations

import copy
import csv
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

PROFILE_PATH = Path(__file__).with_name("basic_profile.csv")
PROFILE_EDITION = "PS3.15 2024b"

PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020
TEXT_VRS = {"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
NUMERIC_VRS = {"DS", "IS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV", "AT"}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC Image Storage and the multi-frame SC classes
BURNED_IN_MODALITIES = {"US", "SC", "ES", "XA", "XC", "OT"}
PROJECTION_MODALITIES = {"CR", "DX", "MG", "RF", "PX", "IO"}
DUMMY_TEXT = "ANONYMIZED"
DUMMY_NAME = "ANONYMOUS"
KEPT = {"K", "C"}
LOOKUP_VRS = TEXT_VRS | {"CS", "DA", "DT", "UI"}


# ---- the profile -------------------------------------------------------------------------------------

@cache
def _rows() -> dict[str, tuple[str, str]]:
    with PROFILE_PATH.open(encoding="utf-8") as f:
        lines = (line for line in f if not line.startswith("#"))
        return {r["tag"]: (r["name"], r["action"]) for r in csv.DictReader(lines)}


@cache
def _patterns() -> tuple[tuple[int, int, str], ...]:
    """(mask, value, pattern) of the repeating-group rows such as ``60xx3000``."""
    return tuple((int("".join("0" if c == "x" else "f" for c in t), 16), int(t.replace("x", "0"), 16), t)
                 for t in _rows() if "x" in t)


def load_profile() -> dict[str, str]:
    """Table E.1-1 as ``{tag: basic profile action}``; tags are 8 lowercase hex digits
    (``00100010``), repeating groups have ``x`` digits (``50xxxxxx``, ``60xx3000``)."""
    return {tag: action for tag, (_, action) in _rows().items()}


def _profile_row(tag: int) -> tuple[str, str] | None:
    row = _rows().get(f"{tag:08x}")
    if row is None:
        row = next((_rows()[p] for mask, value, p in _patterns() if tag & mask == value), None)
    return row


def profile_action(tag: int) -> str | None:
    """The Table E.1-1 action of a tag, or None when the table does not list it (kept)."""
    row = _profile_row(tag)
    return row[1] if row else None


def effective_action(tag: int, vr: str) -> str | None:
    """The single action this module applies: the compound rule of the module docstring, D on a
    time becomes C (a whole-day shift leaves times unchanged), and patient name / ID get a
    pseudonymous dummy (D). None: not in the table, kept as it is."""
    if tag in (PATIENT_NAME, PATIENT_ID):
        return "D"
    action = profile_action(tag)
    if action is None:
        return None
    options = action.split("/")
    if vr == "SQ":
        return next(a for a in ("U*", "Z", "D", "X") if a in options)
    choice = options[-1]
    if choice == "U*":
        choice = "U" if vr == "UI" else "Z"
    if choice == "D" and vr == "UI":
        return "U"
    if choice == "D" and vr == "TM":
        return "C"
    return choice


# ---- keyed derivations -------------------------------------------------------------------------------

def _mac(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\x00{value}".encode("utf-8"), hashlib.sha256).digest()


def new_uid(key: bytes, uid: str) -> str:
    """The replacement of a UID: ``2.25.`` and a 128-bit integer from HMAC(key, uid)."""
    return "2.25." + str(int.from_bytes(_mac(key, "uid", uid)[:16], "big"))


def patient_pseudonym(key: bytes, patient_id: str) -> str:
    """The pseudonymous Patient ID of an original Patient ID (20 hex digits)."""
    return _mac(key, "patient-id", patient_id).hex()[:20].upper()


def date_shift_days(key: bytes, patient_key: str) -> int:
    """The per-patient date offset, in [-365, -1] days."""
    return -1 - int.from_bytes(_mac(key, "date-shift", patient_key)[:8], "big") % 365


def _value_hash(key: bytes, value: object) -> str:
    """A keyed hash of an original value for the audit trail (not reversible by a dictionary)."""
    return _mac(key, "audit", str(value)).hex()[:16]


# ---- result ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttributeAction:
    path: str            # e.g. "(0008,1140)[0].(0008,1155)"
    keyword: str
    action: str          # X, Z, D, U, U*, C (as applied)
    original_hash: str   # keyed hash of the original value, "" when it was empty


@dataclass(frozen=True)
class ReidRow:
    """One row of the re-identification map, for the restricted layer only."""
    kind: str            # "uid", "patient_id" or "date_shift_days"
    original: str
    replacement: str


@dataclass
class DeidResult:
    dataset: Dataset
    actions: list[AttributeAction]
    reid_map: list[ReidRow]
    date_shift_days: int
    burned_in_risk: bool
    burned_in_reason: str


@dataclass
class _Context:
    key: bytes
    shift_days: int
    pseudonym: str
    actions: list[AttributeAction] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)
    dates_shifted: int = 0

    def uid(self, value: str) -> str:
        value = str(value).strip("\x00 ")
        if value not in self.uids:
            self.uids[value] = new_uid(self.key, value)
        return self.uids[value]

    def shift(self, value: str, vr: str) -> str:
        """A DA or DT value moved by the patient's shift ('' when it cannot be parsed)."""
        value = str(value).strip()
        try:
            day = dt.datetime.strptime(value[:8], "%Y%m%d").date()
        except ValueError:
            return ""
        self.dates_shifted += 1
        moved = (day + dt.timedelta(days=self.shift_days)).strftime("%Y%m%d")
        return moved + (value[8:] if vr == "DT" else "")


# ---- de-identification -------------------------------------------------------------------------------

def _tag_text(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def _values(elem: DataElement) -> list:
    return list(elem.value) if isinstance(elem.value, (MultiValue, list)) else [elem.value]


def _set(elem: DataElement, values: list) -> None:
    elem.value = values if len(values) > 1 else values[0]


def _replace_with_dummy(elem: DataElement, ctx: _Context, path: str) -> str:
    """Apply D to a non-empty element; returns the action really taken."""
    vr = elem.VR
    if elem.tag == PATIENT_ID:
        elem.value = ctx.pseudonym
    elif elem.tag == PATIENT_NAME:
        elem.value = f"{DUMMY_NAME}^{ctx.pseudonym}"
    elif vr == "SQ":
        for i, item in enumerate(elem.value):
            _clean(item, ctx, f"{path}[{i}].", dummy_text=True)
    elif vr in ("DA", "DT"):
        _set(elem, [ctx.shift(v, vr) for v in _values(elem)])
    elif vr == "PN":
        elem.value = DUMMY_NAME
    elif vr in TEXT_VRS or vr == "CS":
        elem.value = DUMMY_TEXT
    elif vr == "AS":
        elem.value = "000Y"
    elif vr in NUMERIC_VRS:
        elem.value = "0" if vr in ("DS", "IS") else 0
    else:  # binary (OB, OW, UN, ...): there is no meaningful dummy, so no value at all
        elem.value = elem.empty_value
        return "Z"
    return "D"


def _clean(ds: Dataset, ctx: _Context, path: str = "", dummy_text: bool = False) -> None:
    """Apply the profile to every element of ``ds`` in place, recursing into sequences.
    ``dummy_text``: inside a sequence under D, free text not in the table gets a dummy too."""
    for elem in list(ds):
        where = path + _tag_text(elem.tag)
        original = "" if elem.is_empty or elem.VR == "SQ" else _value_hash(ctx.key, elem.value)
        action = "X" if elem.tag.is_private else effective_action(elem.tag, elem.VR)
        if action is None:
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value):
                    _clean(item, ctx, f"{where}[{i}].", dummy_text)
                continue
            if not dummy_text or elem.is_empty:
                continue
            if elem.VR in ("DA", "DT", "PN") or elem.VR in TEXT_VRS:
                action = "D"
            else:
                continue
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = [] if elem.VR == "SQ" else elem.empty_value
        elif action == "U":
            if not elem.is_empty:
                _set(elem, [ctx.uid(v) for v in _values(elem)])
        elif action == "U*":
            for i, item in enumerate(elem.value):
                _clean(item, ctx, f"{where}[{i}].", dummy_text)
        elif action == "D" and (not elem.is_empty or elem.tag in (PATIENT_NAME, PATIENT_ID)):
            action = _replace_with_dummy(elem, ctx, where)
        keyword = elem.keyword or keyword_for_tag(elem.tag)
        ctx.actions.append(AttributeAction(where, keyword, action, original))


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _mark_deidentified(ds: Dataset, dates_shifted: bool) -> None:
    """Record the method, after any earlier de-identification recorded in the dataset."""
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if dates_shifted:
        codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.PatientIdentityRemoved = "YES"
    earlier = _values(ds["DeidentificationMethod"]) if "DeidentificationMethod" in ds else []
    ds.DeidentificationMethod = [v for v in earlier if v] + [
        f"Basic Application Confidentiality Profile {PROFILE_EDITION}",
        "UIDs remapped (2.25 HMAC); dates shifted per patient"]
    sequence = ds.get("DeidentificationMethodCodeSequence") or Sequence()
    present = {item.get("CodeValue") for item in sequence}
    sequence.extend(_code_item(value, meaning) for value, meaning in codes if value not in present)
    ds.DeidentificationMethodCodeSequence = sequence


def burned_in_risk(ds: Dataset) -> tuple[bool, str]:
    """Whether the pixels may carry burned-in identifying text, and why (``""`` when not)."""
    flag = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    modality = str(ds.get("Modality", "")).upper()
    image_type = {str(v).upper() for v in _values(ds["ImageType"])} if "ImageType" in ds else set()
    reasons = []
    if flag == "YES":
        reasons.append("BurnedInAnnotation is YES")
    if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_PREFIX):
        reasons.append("secondary capture (a captured screen)")
    if flag != "NO":
        if modality in BURNED_IN_MODALITIES:
            reasons.append(f"{modality} images often carry burned-in text and BurnedInAnnotation "
                           f"is {flag or 'absent'}")
        elif image_type & {"DERIVED", "SECONDARY"} and modality in PROJECTION_MODALITIES:
            reasons.append(f"derived/secondary {modality} image (markers, annotations) and "
                           f"BurnedInAnnotation is {flag or 'absent'}")
    if any(0x6000 <= elem.tag.group <= 0x601E and not elem.tag.group % 2 for elem in ds):
        reasons.append("overlay planes present: annotation bits may sit in the pixel data")
    return bool(reasons), "; ".join(dict.fromkeys(reasons))


def deidentify(ds: Dataset, *, key: bytes, patient_key: str) -> DeidResult:
    """De-identify a copy of ``ds`` (never changed) with the basic profile.

    ``key``: the HMAC key (``Settings.deid_key``); ``patient_key``: the stable patient identity that
    decides the date shift (e.g. the lakehouse ``person_id``). Returns the dataset, the actions
    taken per attribute, the re-identification map and the burned-in annotation risk."""
    risk, reason = burned_in_risk(ds)
    out = copy.deepcopy(ds)
    for keyword in ("PatientName", "PatientID"):  # type 2, and the reading centre needs the pseudonym
        if keyword not in out:
            setattr(out, keyword, "")
    original_id = str(ds.get("PatientID", "") or "").strip()
    ctx = _Context(key, date_shift_days(key, patient_key), patient_pseudonym(key, original_id or patient_key))
    _clean(out, ctx)
    if getattr(out, "file_meta", None) is not None:
        _clean(out.file_meta, ctx, "file_meta.")
    if getattr(out, "preamble", None):
        out.preamble = b"\x00" * 128  # a preamble may carry another format's header
    _mark_deidentified(out, ctx.dates_shifted > 0)
    reid = [ReidRow("patient_id", original_id or patient_key, ctx.pseudonym),
            ReidRow("date_shift_days", patient_key, str(ctx.shift_days))]
    reid += [ReidRow("uid", old, new) for old, new in ctx.uids.items()]
    return DeidResult(out, ctx.actions, reid, ctx.shift_days, risk, reason)


# ---- inspection --------------------------------------------------------------------------------------

def walk(ds: Dataset, path: str = "") -> Iterator[tuple[str, DataElement]]:
    """Every element of ``ds`` with its path, depth first through sequence items."""
    for elem in ds:
        where = path + _tag_text(elem.tag)
        yield where, elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from walk(item, f"{where}[{i}].")


def _all_elements(ds: Dataset) -> Iterator[tuple[str, DataElement]]:
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from walk(meta, "file_meta.")
    yield from walk(ds)


def _strings(elem: DataElement) -> set[str]:
    if elem.is_empty or elem.VR == "SQ":
        return set()
    return {str(v).strip("\x00 ") for v in _values(elem)} - {""}


def surviving_identifiers(original: Dataset, deidentified: Dataset) -> list[str]:
    """Identifying attributes of ``original`` that survive in ``deidentified``: a non-empty value of
    an attribute the profile does not keep (not K/C) found unchanged under the same tag anywhere
    (sequences included), a value of 6+ characters found in any other element, a sequence the
    profile removes still holding items, and any private attribute. One line per finding."""
    wanted: dict[int, set[str]] = {}
    long_values: dict[str, int] = {}
    for _, elem in _all_elements(original):
        action = effective_action(elem.tag, elem.VR)
        if not elem.tag.is_private and action is not None and action not in KEPT:
            values = _strings(elem) - {DUMMY_TEXT, DUMMY_NAME}
            wanted.setdefault(elem.tag, set()).update(values)
            if elem.VR in LOOKUP_VRS:  # not measurements: a weight of 70 is no identity elsewhere
                long_values.update((v, elem.tag) for v in values if len(v) >= 6)
    found = []
    for where, elem in _all_elements(deidentified):
        name = f"{where} {elem.keyword or keyword_for_tag(elem.tag) or 'private'}"
        if elem.tag.is_private:
            found.append(f"{name}: private attribute left")
            continue
        if elem.VR == "SQ" and len(elem.value) and effective_action(elem.tag, "SQ") == "X":
            found.append(f"{name}: sequence the profile removes still has items")
        values = _strings(elem)
        same_tag = values & wanted.get(elem.tag, set())
        if same_tag:
            found.append(f"{name}: original value kept")
        for value in values - same_tag:
            if value in long_values:
                found.append(f"{name}: holds the original value of {_tag_text(BaseTag(long_values[value]))}")
    return found
