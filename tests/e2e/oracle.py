"""The independent computation: every indicator of catalogue 2026.3, computed in
plain Python straight from what the simulated city's sources deliver, never from the platform's
tables and without any of its code:

- the regional database (SQLite);
- the legacy county's daily GBK CSV exports (the latest version of each row, voided rows left out);
- the city hospital's daily FHIR NDJSON bulk exports (the latest version of each resource,
  deletions applied);
- the reference snapshot of the national essential-drug list;
- the simulator's ground truth ``duplicate_persons.csv``, which names the true person behind every
  identity record (where the platform has its EMPI).

Rows bronze rejects count nowhere: a wrong field count, undecodable text, a missing key, a date or
time that cannot be (regional: not yyyy-MM-dd, before 1900 or more than a year ahead; legacy: not
in the contract's format), a FHIR line that is not JSON or not of the file's type. Records whose
resident or patient is not in bronze cannot be attributed to a person and count nowhere either
(silver quarantines them), and an event dated after the day its source recorded it counts in no
period. Each rule function starts with the 口径 choices it makes where the design leaves room.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

Key = tuple[str, str, str, str]          # (indicator_id, period, org_level, org_code)

# Age-band prevalence (lower bound of the band → prevalence) behind the estimated patients of the
# 管理率 denominators: copied from ingest/simulator/people.py (HTN_PREVALENCE, DM_PREVALENCE), as
# the catalogue copies them; the oracle must not import the simulator.
HTN_PREVALENCE = ((18, 0.05), (35, 0.12), (45, 0.25), (55, 0.38), (65, 0.50), (75, 0.58))
DM_PREVALENCE = ((18, 0.02), (35, 0.05), (45, 0.10), (55, 0.15), (65, 0.18), (75, 0.20))
ADULT_AGE, ELDERLY_AGE, CHILD_MAX_AGE = 18, 65, 6
EARLY_WEEKS, POSTPARTUM_DAYS = 13, 28          # 孕13周之前; 产后28天内
# 国家免疫规划 (vaccine code, dose, due age in days): the schedule as the catalogue states it
NIP_SCHEDULE = (("0201", 1, 0), ("0101", 1, 0), ("0201", 2, 30), ("0303", 1, 60), ("0303", 2, 90), ("0402", 1, 90),
                ("0311", 3, 120), ("0402", 2, 120), ("0402", 3, 150), ("0201", 3, 180), ("1601", 1, 180),
                ("1201", 1, 240), ("1801", 1, 240), ("1601", 2, 270), ("0402", 4, 540), ("1201", 2, 540),
                ("1901", 1, 540), ("1801", 2, 730), ("1701", 1, 1095), ("0311", 4, 1460), ("1701", 2, 2190),
                ("0601", 1, 2190))
# 动态记录: the service tables whose records make an archive "in use" (table → service day)
ARCHIVE_SERVICES = {"hypertension_followups": "followup_date", "diabetes_followups": "followup_date",
                    "elderly_checkups": "checkup_date", "child_health_checks": "check_date",
                    "prenatal_visits": "visit_date", "postpartum_visits": "visit_date",
                    "immunizations": "vaccinated_date", "outpatient_visits": "visit_date"}
FACE_TO_FACE, MIN_FACE_TO_FACE = ("clinic", "home"), 4
SBP_BELOW, DBP_BELOW, GLUCOSE_BELOW = 140, 90, 7.0
# what a living person can have (the platform's impossible_vitals flag uses the same ranges): a
# latest follow-up outside them proves no control
SBP_RANGE, DBP_RANGE, GLUCOSE_RANGE = (50, 300), (20, 200), (1.0, 40.0)
ECG_LIMIT_HOURS = 24
IMAGING_LIMIT_HOURS, IMAGING_LIMIT_BY_MODALITY = 24, {"CT": 48, "MR": 48}
# 管理率: only persons alive on 31 Dec count (estimated and managed patients alike); the design's
# "no death filter in batch 1" is read as being about the registered patients of 规范管理率 / 控制率
MANAGEMENT_RATE_ALIVE_ON_DEC_31 = True

ALL_LEVELS = ("institution", "township", "county", "city")
RESIDENCE_LEVELS = ("township", "county", "city")      # persons counted at their residence township centre
YEAR, MONTH_QUARTER_YEAR = ("year",), ("month", "quarter", "year")
INDICATORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {   # id → (org levels, period types)
    "htn_mgmt_rate": (RESIDENCE_LEVELS, YEAR),
    "htn_standard_mgmt_rate": (ALL_LEVELS, YEAR),
    "htn_bp_control_rate": (ALL_LEVELS, YEAR),
    "dm_mgmt_rate": (RESIDENCE_LEVELS, YEAR),
    "dm_standard_mgmt_rate": (ALL_LEVELS, YEAR),
    "dm_glucose_control_rate": (ALL_LEVELS, YEAR),
    "elderly_health_mgmt_rate": (RESIDENCE_LEVELS, YEAR),
    "child_health_mgmt_rate": (RESIDENCE_LEVELS, YEAR),
    "nip_vaccination_rate": (RESIDENCE_LEVELS, YEAR),
    "archive_rate": (RESIDENCE_LEVELS, YEAR),
    "archive_use_rate": (ALL_LEVELS, YEAR),
    "family_doctor_contract_rate": (RESIDENCE_LEVELS, YEAR),
    "key_population_contract_rate": (RESIDENCE_LEVELS, YEAR),
    "early_pregnancy_registration_rate": (RESIDENCE_LEVELS, YEAR),
    "postpartum_visit_rate": (RESIDENCE_LEVELS, YEAR),
    "outpatient_visits": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "outpatient_avg_fee": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "inpatient_avg_cost": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "essential_drug_rate": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "antibiotic_rx_rate": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "iv_infusion_rx_rate": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "referrals_up": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "referrals_down": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "remote_ecg_requests": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "remote_imaging_requests": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "remote_ecg_report_timeliness": (ALL_LEVELS, MONTH_QUARTER_YEAR),
    "remote_imaging_report_timeliness": (ALL_LEVELS, MONTH_QUARTER_YEAR),
}
VOLUMES = {"outpatient_visits", "referrals_up", "referrals_down", "remote_ecg_requests", "remote_imaging_requests"}

CHINA = dt.timezone(dt.timedelta(hours=8))
LEGACY_TS = "%Y/%m/%d %H:%M:%S"


# ---- reading the sources as bronze accepts them ---------------------------------------------------

def _date(text):
    try:
        d = dt.datetime.strptime(text, "%Y-%m-%d").date()
    except (TypeError, ValueError):
        return None
    return d if dt.date(1900, 1, 1) <= d <= dt.date.today() + dt.timedelta(days=366) else None


def _legacy_exports(dropzone: Path, prefix: str, key: str, dates: dict[str, str]) -> list[dict]:
    """The live rows of a legacy county's export ``prefix`` as its daily GBK files say: the latest
    version of each key (by 修改时间, then delivery day), voided ones (作废标志 = 1) left out, and
    rows bronze rejects (wrong field count, undecodable bytes, a date that cannot be) never counted."""
    latest = {}
    for county in sorted(dropzone.glob("legacy_*")):
        for day in sorted(d for d in county.iterdir() if d.is_dir()):
            for f in sorted(day.glob(f"{prefix}_*.csv")):
                header, *rows = list(csv.reader(io.StringIO(f.read_bytes().decode("gbk", errors="replace"))))
                for r in rows:
                    rec = dict(zip(header, r), _source=county.name)
                    if len(r) != len(header) or any("\ufffd" in v for v in r) or not rec[key].strip():
                        continue
                    if any(rec[c] and _parse(rec[c], fmt) is None for c, fmt in dates.items()):
                        continue
                    version = (rec["修改时间"], day.name)
                    if rec[key] not in latest or version >= latest[rec[key]][0]:
                        latest[rec[key]] = (version, rec)
    return [rec for _, rec in latest.values() if rec["作废标志"] != "1"]


def _parse(text: str, fmt: str):
    try:
        return dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None


def _ts(text):
    """A 'YYYY-MM-DD HH:MM:SS' time as bronze accepts it, else None."""
    try:
        t = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return None
    return t if t.year >= 1900 else None


def _day(text):
    """The calendar day of a stored date or time (its first ten characters), as silver types it."""
    return _date(text[:10]) if isinstance(text, str) else None


def _num(value):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(value):
    x = _num(value)
    return None if x is None else int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _flag(value):
    v = str(value).strip().lower() if value is not None else ""
    return True if v in ("1", "true", "y", "是") else False if v in ("0", "false", "n", "否") else None


def _blank(value) -> bool:
    return value is None or not str(value).strip()


# regional table → (key, date columns, timestamp columns): ingest/connectors/contracts/regional.yaml
REGIONAL = {
    "residents": ("resident_id", ("birth_date",), ()),
    "death_registrations": ("death_id", ("birth_date", "death_date", "reported_date"), ()),
    "hypertension_registry": ("registry_id", ("diagnosed_date", "registered_date"), ()),
    "hypertension_followups": ("followup_id", ("followup_date", "next_followup_date"), ()),
    "diabetes_registry": ("registry_id", ("diagnosed_date", "registered_date"), ()),
    "diabetes_followups": ("followup_id", ("followup_date", "next_followup_date"), ()),
    "elderly_checkups": ("checkup_id", ("checkup_date",), ()),
    "outpatient_visits": ("visit_id", ("visit_date",), ()),
    "prescriptions": ("prescription_id", ("prescribed_date",), ()),
    "inpatient_stays": ("stay_id", ("admission_date", "discharge_date"), ()),
    "referrals": ("referral_id", ("referral_date",), ()),
    "ecg_requests": ("request_id", (), ("requested_at", "recorded_at")),
    "ecg_reports": ("report_id", (), ("reported_at",)),
    "imaging_requests": ("request_id", (), ("requested_at", "images_received_at")),
    "imaging_reports": ("report_id", (), ("reported_at",)),
    "health_archives": ("archive_no", ("created_date",), ()),
    "family_doctor_contracts": ("contract_id", ("signed_date", "start_date", "end_date"), ()),
    "child_health_checks": ("check_id", ("check_date",), ()),
    "pregnancy_registrations": ("pregnancy_id", ("registered_date", "last_menstrual_date", "expected_delivery_date"), ()),
    "prenatal_visits": ("visit_id", ("visit_date",), ()),
    "postpartum_visits": ("visit_id", ("delivery_date", "visit_date"), ()),
    "immunizations": ("immunization_id", ("vaccinated_date",), ()),
}


def _regional(con: sqlite3.Connection, table: str) -> list[dict]:
    """The live rows of a regional table that bronze accepts, with ``_source`` and ``_created``
    (the day the source recorded the row)."""
    key, dates, stamps = REGIONAL[table]
    cur = con.execute(f"SELECT * FROM {table}")
    cols = [c[0] for c in cur.description]
    out = []
    for values in cur:
        r = dict(zip(cols, values))
        if r["is_deleted"] or _blank(r[key]) or _ts(r["updated_at"]) is None:
            continue
        if any(r[c] is not None and _date(r[c]) is None for c in dates):
            continue
        if any(r[c] is not None and _ts(r[c]) is None for c in stamps):
            continue
        r["_source"], r["_created"] = "regional", _day(r["created_at"])
        out.append(r)
    return out


# legacy export → (file prefix, key header, created-at header, {header: column}, {header: date format})
# (ingest/connectors/contracts/legacy_<county>.yaml)
LEGACY = {
    "residents": ("JMXX", "居民编号", "建档时间",
                  {"居民编号": "resident_id", "出生日期": "birth_date", "所属乡镇": "area_code"},
                  {"出生日期": "%Y%m%d"}),
    "health_archives": ("JKDA", "档案编号", "建档时间",
                        {"档案编号": "archive_no", "居民编号": "resident_id", "建档机构": "org_code",
                         "建档日期": "created_date"},
                        {"建档日期": "%Y/%m/%d"}),
    "family_doctor_contracts": ("QYXX", "签约编号", "录入时间",
                                {"签约编号": "contract_id", "居民编号": "resident_id", "签约机构": "org_code",
                                 "签约日期": "signed_date", "生效日期": "start_date", "到期日期": "end_date"},
                                {"签约日期": "%Y%m%d", "生效日期": "%Y%m%d", "到期日期": "%Y%m%d"}),
    "hypertension_registry": ("GXYDJ", "登记编号", "录入时间",
                              {"登记编号": "registry_id", "居民编号": "resident_id", "管理机构": "org_code",
                               "登记日期": "registered_date"},
                              {"登记日期": "%Y/%m/%d", "确诊日期": "%Y%m%d"}),
    "hypertension_followups": ("GXYSF", "随访编号", "录入时间",
                               {"随访编号": "followup_id", "居民编号": "resident_id", "随访机构": "org_code",
                                "随访日期": "followup_date", "随访方式": "followup_type", "收缩压": "sbp_mmhg",
                                "舒张压": "dbp_mmhg"},
                               {"随访日期": "%Y/%m/%d", "下次随访日期": "%Y%m%d"}),
    "diabetes_registry": ("TNBDJ", "登记编号", "录入时间",
                          {"登记编号": "registry_id", "居民编号": "resident_id", "管理机构": "org_code",
                           "登记日期": "registered_date"},
                          {"登记日期": "%Y/%m/%d", "确诊日期": "%Y%m%d"}),
    "diabetes_followups": ("TNBSF", "随访编号", "录入时间",
                           {"随访编号": "followup_id", "居民编号": "resident_id", "随访机构": "org_code",
                            "随访日期": "followup_date", "随访方式": "followup_type",
                            "空腹血糖": "fasting_glucose_mmol", "收缩压": "sbp_mmhg", "舒张压": "dbp_mmhg"},
                           {"随访日期": "%Y/%m/%d", "下次随访日期": "%Y%m%d"}),
    "elderly_checkups": ("LNRTJ", "体检编号", "录入时间",
                         {"体检编号": "checkup_id", "居民编号": "resident_id", "体检机构": "org_code",
                          "体检日期": "checkup_date"},
                         {"体检日期": "%Y/%m/%d"}),
    "outpatient_visits": ("MZJZ", "就诊流水号", "录入时间",
                          {"就诊流水号": "visit_id", "居民编号": "resident_id", "就诊机构": "org_code",
                           "就诊日期": "visit_date", "总费用": "fee_yuan"},
                          {"就诊日期": "%Y%m%d"}),
    "prescriptions": ("CFMX", "处方明细号", "录入时间",
                      {"处方明细号": "prescription_id", "就诊流水号": "visit_id", "居民编号": "resident_id",
                       "开方机构": "org_code", "开方日期": "prescribed_date", "基药标志": "is_essential_drug",
                       "抗菌药标志": "is_antibiotic", "静脉输液标志": "is_iv_infusion"},
                      {"开方日期": "%Y/%m/%d"}),
}


def _legacy(dropzone: Path, entity: str) -> list[dict]:
    """The live rows of a legacy export that bronze accepts, under the standard column names (dates
    as yyyy-MM-dd, blanks as None), with ``_source`` and ``_created``."""
    prefix, key, created, columns, dates = LEGACY[entity]
    # bronze also rejects a row whose entry or modification time does not parse
    checked = {**dates, created: LEGACY_TS, "修改时间": LEGACY_TS}
    out = []
    for rec in _legacy_exports(dropzone, prefix, key, checked):
        r = {col: (rec.get(h) if not _blank(rec.get(h)) else None) for h, col in columns.items()}
        for h, fmt in dates.items():
            if h in columns and r[columns[h]] is not None:
                r[columns[h]] = _parse(r[columns[h]], fmt).isoformat()
        r["_source"] = rec["_source"]
        r["_created"] = _parse(rec[created], LEGACY_TS) if rec.get(created) else None
        out.append(r)
    return out


def _fhir_time(text):
    """A FHIR date or instant as silver reads it: 'YYYY-MM-DD HH:MM:SS' in China time, else None."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(CHINA)
    return f"{t:%Y-%m-%d %H:%M:%S}" if 1900 <= t.year <= 2100 else None


def _ndjson(path: Path):
    if not path.is_file():
        return
    for line in path.read_bytes().decode("utf-8", errors="replace").split("\n"):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line) if line.startswith("{") else None
        except ValueError:
            obj = None
        yield obj


def _ref_id(ref, rtype: str):
    m = re.match(rf"^(?:.*/)?{rtype}/([^/]+)$", (ref or {}).get("reference") or "")
    return m.group(1) if m else None


# the resources the indicators read, and the dates / instants bronze checks in each
FHIR_DATES = {
    "Patient": (("birthDate",), ("deceasedDateTime",)),
    "Encounter": (("period", "start"), ("period", "end")),
    "MedicationRequest": (("authoredOn",),),
}


def _get(obj, path):
    for p in path:
        obj = obj.get(p) if isinstance(obj, dict) else None
    return obj


def _fhir(dropzone: Path) -> dict[str, list[dict]]:
    """resource type → the live resources of every hospital's FHIR export that bronze accepts (the
    latest version of each id by meta.lastUpdated, then delivery day; a DELETE in ``deleted.ndjson``
    wins from its export's transactionTime on), each with ``_source`` and ``_updated``."""
    latest: dict[tuple, tuple] = {}

    def keep(key, version, res):
        if key not in latest or version >= latest[key][0]:
            latest[key] = (version, res)

    for src in sorted(p for p in dropzone.glob("fhir_*") if p.is_dir()):
        for day in sorted(d for d in src.iterdir() if d.is_dir()):
            try:
                tx = json.loads((day / "manifest.json").read_text(encoding="utf-8")).get("transactionTime")
            except (OSError, ValueError, AttributeError):
                tx = None
            for rtype, dated in FHIR_DATES.items():
                for res in _ndjson(day / f"{rtype}.ndjson"):
                    if not isinstance(res, dict) or res.get("resourceType") != rtype:
                        continue
                    rid, updated = res.get("id"), _fhir_time(_get(res, ("meta", "lastUpdated")))
                    if _blank(rid) or updated is None:
                        continue
                    if any(_get(res, p) is not None and _fhir_time(_get(res, p)) is None for p in dated):
                        continue
                    keep((src.name, rtype, rid), (updated, day.name), {**res, "_source": src.name, "_updated": updated})
            for bundle in _ndjson(day / "deleted.ndjson"):
                if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                    continue
                when = (_fhir_time(tx) or _fhir_time(bundle.get("timestamp"))
                        or _fhir_time(_get(bundle, ("meta", "lastUpdated"))) or f"{day.name} 23:59:59")
                for entry in bundle.get("entry") or []:
                    req = entry.get("request") if isinstance(entry, dict) else None
                    if not isinstance(req, dict) or str(req.get("method") or "").upper() != "DELETE":
                        continue
                    m = re.match(r"^(?:.*/)?([A-Za-z]+)/([^/?#]+)$", req.get("url") or "")
                    if m and m.group(1) in FHIR_DATES:
                        keep((src.name, m.group(1), m.group(2)), (when, day.name), None)
    out: dict[str, list[dict]] = {t: [] for t in FHIR_DATES}
    for (_, rtype, _), (_, res) in latest.items():
        if res is not None:
            out[rtype].append(res)
    return out


def _essential_drugs(dropzone: Path) -> set[str] | None:
    """The drug codes of the essential-drug reference snapshot as bronze keeps them (None when it
    was not delivered: the hospital's lines then carry no essential-drug flag)."""
    path = dropzone / "reference" / "essential_drugs.csv"
    if not path.is_file():
        return None
    header, *rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8", errors="replace"))))
    header = [h.lstrip("\ufeff").strip() for h in header]
    if "drug_code" not in header:
        return None
    i = header.index("drug_code")
    codes = set()
    for r in rows:
        if len(r) != len(header) or any("\ufffd" in v for v in r) or not r[i].strip():
            continue
        codes.add(r[i])
    return codes


# ---- the city as the platform's silver layer would hold it --------------------------------------

@dataclass
class Person:
    birth: dt.date | None = None
    area_code: str | None = None        # township of residence (9-digit area code)
    death: dt.date | None = None

    def age_on(self, day: dt.date) -> int:
        b = self.birth
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


@dataclass
class Event:
    """One silver row an indicator reads."""
    key: str
    person: str | None
    org: str | None
    day: dt.date | None                  # the event's own day (what decides its period)
    row: dict


class City:
    """Everything the rules read: org units with their roll-up, the true persons, and every entity
    as its silver table would hold it (bronze-valid, live, attributed to a person)."""

    def __init__(self, db: Path, dropzone: Path, ground_truth: Path):
        dropzone = Path(dropzone)
        with open(Path(ground_truth) / "duplicate_persons.csv", encoding="utf-8") as f:
            true_person = {(r["source"], r["record_key"]): r["person_key"] for r in csv.DictReader(f)}
        con = sqlite3.connect(db)
        try:
            self._org_units(con)
            fhir = _fhir(dropzone)
            self._persons(con, dropzone, fhir, true_person)
            self.tables = {t: _regional(con, t) for t in REGIONAL if t not in ("residents", "death_registrations")}
        finally:
            con.close()
        for entity in LEGACY:
            if entity != "residents":
                self.tables[entity] += _legacy(dropzone, entity)
        self._hospital(dropzone, fhir)

    def _org_units(self, con) -> None:
        orgs = {c: (lvl, parent, typ, area) for c, lvl, parent, typ, area in con.execute(
            "SELECT org_code, level, parent_code, org_type, area_code FROM org_units WHERE is_deleted = 0")}
        city = next(c for c, o in orgs.items() if o[2] == "city_bureau")
        self.units: dict[str, dict[str, str]] = {}   # org_code → org level → the unit it counts for there
        for code, (lvl, parent, typ, _) in orgs.items():
            u = {"institution": code, "city": city}
            if lvl == "village":
                u["township"] = parent
                if parent in orgs and orgs[parent][1]:
                    u["county"] = orgs[parent][1]
            elif lvl == "township":
                u["township"], u["county"] = code, parent
            elif lvl == "county":
                u["county"] = code if typ == "county_bureau" else parent
            self.units[code] = {k: v for k, v in u.items() if v}
        self.centre_of_area = {}                       # township area code → its health centre
        for code, (lvl, _, _, area) in sorted(orgs.items()):
            if lvl == "township":
                self.centre_of_area.setdefault(area, code)

    def _persons(self, con, dropzone: Path, fhir: dict, true_person: dict) -> None:
        """The identity records bronze holds → the true persons (birth date, residence, death) and
        ``self.resolve``: (source, resident / patient id) → person, for the records that name them."""
        self.resolve: dict[tuple[str, str], str] = {}
        people: dict[str, Person] = defaultdict(Person)

        def describe(pk, birth, area=None):
            p = people[pk]
            p.birth = p.birth or birth
            p.area_code = p.area_code or (area if not _blank(area) else None)

        for r in _regional(con, "residents"):
            pk = self.resolve[("regional", r["resident_id"])] = true_person[("regional", r["resident_id"])]
            describe(pk, _date(r["birth_date"]), r["area_code"])
        for r in _legacy(dropzone, "residents"):
            pk = self.resolve[(r["_source"], r["resident_id"])] = true_person[(r["_source"], r["resident_id"])]
            describe(pk, _date(r["birth_date"]), r["area_code"])
        for r in _regional(con, "death_registrations"):
            pk = true_person[("regional", r["death_id"])]
            describe(pk, _date(r["birth_date"]), r["area_code"])
            died = _date(r["death_date"])
            if died and (people[pk].death is None or died < people[pk].death):
                people[pk].death = died
        for res in fhir["Patient"]:
            pk = self.resolve[(res["_source"], res["id"])] = true_person[(res["_source"], res["id"])]
            describe(pk, _day(_fhir_time(res.get("birthDate"))))
        # residents of the city: a birth date and a residence township with a health centre
        self.persons = {pk: p for pk, p in people.items()
                        if p.birth and p.area_code in self.centre_of_area}
        self.death_of = {pk: p.death for pk, p in people.items()}

    def _hospital(self, dropzone: Path, fhir: dict) -> None:
        """The hospital's outpatient encounters and medication requests as silver rows: a visit's
        institution is the encounter's service provider, a line's that of its encounter."""
        essential = _essential_drugs(dropzone)
        provider = {}
        for enc in fhir["Encounter"]:
            provider[(enc["_source"], enc["id"])] = _ref_id(enc.get("serviceProvider"), "Organization")
            if _get(enc, ("class", "code")) == "AMB":
                start = _fhir_time(_get(enc, ("period", "start")))
                self.tables["outpatient_visits"].append({
                    "visit_id": enc["id"], "resident_id": _ref_id(enc.get("subject"), "Patient"),
                    "org_code": provider[(enc["_source"], enc["id"])], "visit_date": start and start[:10],
                    "fee_yuan": None, "_source": enc["_source"], "_created": _day(enc["_updated"])})
        for mr in fhir["MedicationRequest"]:
            concept = mr.get("medicationCodeableConcept") or {}
            codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
            drug = next((c for c in codings if c.get("system") == "urn:oid:2.16.156.10011.2.5.1.27"),
                        codings[0] if codings else {})
            visit = _ref_id(mr.get("encounter"), "Encounter")
            authored = _fhir_time(mr.get("authoredOn"))
            self.tables["prescriptions"].append({
                "prescription_id": mr["id"], "visit_id": visit, "resident_id": _ref_id(mr.get("subject"), "Patient"),
                "org_code": provider.get((mr["_source"], visit)), "prescribed_date": authored and authored[:10],
                "is_essential_drug": None if essential is None else int(drug.get("code") in essential),
                "is_antibiotic": None, "is_iv_infusion": None,
                "_source": mr["_source"], "_created": _day(mr["_updated"])})

    def events(self, table: str, key: str, day: str, org: str = "org_code", person: bool = True,
               recorded: bool = True) -> list[Event]:
        """The silver rows of ``table`` as events dated by ``day``: rows that name no person in bronze
        left out (``person``), and with ``recorded`` those dated after the day the source recorded
        them (a future date: in no period) or not dated at all."""
        out = []
        for r in self.tables[table]:
            pk = self.resolve.get((r["_source"], r.get("resident_id"))) if person else None
            if person and pk is None:
                continue
            d = _day(r.get(day))
            if recorded and (d is None or (r["_created"] is not None and d > r["_created"])):
                continue
            out.append(Event(r[key], pk, r.get(org), d, r))
        return out


# ---- summing members into values ------------------------------------------------------------------

def _periods(day: dt.date, types: tuple[str, ...]) -> list[str]:
    label = {"year": f"{day.year}", "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}", "month": f"{day:%Y-%m}"}
    return [label[t] for t in types]


class Values:
    """Members summed per (indicator, period, level, unit): a value exists wherever a member is."""

    def __init__(self, city: City):
        self.units = city.units
        self.sums: dict[Key, tuple[list, list]] = {}

    def add(self, ind: str, day: dt.date, org: str | None, num: float, den: float | None = 1.0,
            period: str | None = None) -> None:
        """One member of ``ind`` dated ``day`` (or of the year ``period``) at institution ``org``:
        ``num`` its numerator value (0 when not in the numerator), ``den`` its denominator value
        (None for a volume)."""
        levels, types = INDICATORS[ind]
        periods = [period] if period else _periods(day, types)
        for level, unit in self.units.get(org, {}).items():
            if level in levels:
                for p in periods:
                    nums, dens = self.sums.setdefault((ind, p, level, unit), ([], []))
                    nums.append(num)
                    if den is not None:
                        dens.append(den)

    def result(self) -> dict[Key, tuple[float, float | None]]:
        return {k: (math.fsum(n), None if k[0] in VOLUMES else math.fsum(d)) for k, (n, d) in sorted(self.sums.items())}


# ---- the rules -------------------------------------------------------------------------------------

def _step(table, age: int) -> float:
    p = 0.0
    for lower, v in table:
        if age >= lower:
            p = v
    return p


def _plausible_bp(sbp, dbp) -> bool:
    return (sbp is not None and dbp is not None and SBP_RANGE[0] <= sbp <= SBP_RANGE[1]
            and DBP_RANGE[0] <= dbp <= DBP_RANGE[1] and dbp < sbp)


def bp_controlled(row: dict) -> bool:
    sbp, dbp = _int(row.get("sbp_mmhg")), _int(row.get("dbp_mmhg"))
    return _plausible_bp(sbp, dbp) and sbp < SBP_BELOW and dbp < DBP_BELOW


def glucose_controlled(row: dict) -> bool:
    g = _num(row.get("fasting_glucose_mmol"))
    return g is not None and GLUCOSE_RANGE[0] <= g <= GLUCOSE_RANGE[1] and g < GLUCOSE_BELOW


def chronic(values: Values, city: City, disease: str, prevalence, controlled, ids: tuple[str, str, str]) -> None:
    """管理率, 规范管理率 and 控制率 of one disease, per year.

    口径 choices:
    - the years are those with at least one follow-up of the disease dated in them (and not
      after the day it was recorded);
    - a managed patient in year Y is a person with a registration dated on or before 31 Dec Y (a
      registration dated after the day it was recorded counts nowhere); the latest such
      registration (by date, then registry id) is the patient's institution for 规范管理率 and
      控制率 (no death filter there: a patient who died during the year still counts);
    - follow-ups are the person's, whatever registration they name; face to face = clinic, home;
    - 控制率: the latest follow-up of the year of any type (by date, then follow-up id); a patient
      without one in the year, or whose latest one has values no living person can have (SBP outside
      50–300, DBP outside 20–200 or not below SBP; glucose outside 1–40 mmol/L), is not controlled;
    - 管理率: members are the city's residents (a person with a birth date and a residence township,
      from any identity record) aged ≥ 18 on 31 Dec and alive on 31 Dec (death date after it, see
      MANAGEMENT_RATE_ALIVE_ON_DEC_31); each adds the prevalence of their age band to the
      denominator and, when managed, 1 to the numerator; all at the residence township centre. A
      managed patient who is not such a resident adds nothing.
    """
    mgmt, standard, control = ids
    regs = defaultdict(list)
    for e in city.events(f"{disease}_registry", "registry_id", "registered_date"):
        regs[e.person].append((e.day, e.key, e.org))
    followups = city.events(f"{disease}_followups", "followup_id", "followup_date")
    face_to_face = Counter((f.person, f.day.year) for f in followups if f.row.get("followup_type") in FACE_TO_FACE)
    latest: dict[tuple[str, int], Event] = {}
    for f in followups:
        k = (f.person, f.day.year)
        if k not in latest or (f.day, f.key) > (latest[k].day, latest[k].key):
            latest[k] = f
    for year in sorted({f.day.year for f in followups}):
        end, period = dt.date(year, 12, 31), str(year)
        managed = {}
        for pk, entries in regs.items():
            current = [e for e in entries if e[0] <= end]
            if current:
                managed[pk] = max(current)
        for pk, (_, _, org) in managed.items():
            values.add(standard, end, org, float(face_to_face[(pk, year)] >= MIN_FACE_TO_FACE), period=period)
            last = latest.get((pk, year))
            values.add(control, end, org, float(last is not None and controlled(last.row)), period=period)
        for pk, p in city.persons.items():
            age = p.age_on(end)
            if age < ADULT_AGE or (MANAGEMENT_RATE_ALIVE_ON_DEC_31 and p.death is not None and p.death <= end):
                continue
            values.add(mgmt, end, city.centre_of_area[p.area_code], float(pk in managed), _step(prevalence, age),
                       period=period)


def age_group(values: Values, city: City, indicator: str, table: str, key: str, day: str,
              min_age: int, max_age: int | None = None) -> None:
    """An age group's coverage by a yearly service, per year: 65岁及以上老年人健康管理率 (elderly
    check-ups), 0～6岁儿童健康管理率 (child health checks).

    口径 choices: the years are those with at least one service dated in them; members are the
    city's residents (as for 管理率) aged min_age to max_age on 31 Dec (born on or before it) whose
    death date, if any, is after 31 Dec; in the numerator with at least one service dated in the
    year, wherever it was done; counted at the residence township centre (levels township, county,
    city: no institution level, as for 管理率).
    """
    services = city.events(table, key, day)
    served = {(c.person, c.day.year) for c in services}
    delivered = _delivered(city, services)
    for year in sorted({c.day.year for c in services}):
        end = dt.date(year, 12, 31)
        for pk, p in city.persons.items():
            age = p.age_on(end)
            if age < min_age or (max_age is not None and age > max_age) or (p.death is not None and p.death <= end):
                continue
            centre = city.centre_of_area[p.area_code]
            if (city.units[centre].get("county"), year) in delivered:
                values.add(indicator, end, centre, float((pk, year) in served), period=str(year))


def _delivered(city: City, services: list) -> set[tuple[str, int]]:
    """(county, year) with at least one of ``services`` dated in the year at one of its
    institutions: a county without any has no value (its systems do not deliver the service)."""
    return {(city.units.get(e.org, {}).get("county"), e.day.year) for e in services}


def vaccination(values: Values, city: City) -> None:
    """适龄儿童国家免疫规划疫苗接种率, per year with a vaccination dated in it.

    口径 choices: the denominator is every dose of NIP_SCHEDULE that falls due in the year (birth
    date + due age) for a resident child alive on 31 Dec, at the residence township centre, in a
    county with a vaccination dated in the year; a dose is given when a vaccination with its
    vaccine code and dose number is dated on or before 31 Dec.
    """
    shots = city.events("immunizations", "immunization_id", "vaccinated_date")
    given = {}
    for v in shots:
        k = (v.person, v.row.get("vaccine_code"), _int(v.row.get("dose_no")))
        given[k] = min(v.day, given.get(k, v.day))
    delivered = _delivered(city, shots)
    for year in sorted({v.day.year for v in shots}):
        end = dt.date(year, 12, 31)
        for pk, p in city.persons.items():
            if p.age_on(end) < 0 or (p.death is not None and p.death <= end):
                continue
            centre = city.centre_of_area[p.area_code]
            if (city.units[centre].get("county"), year) not in delivered:
                continue
            for code, dose, days in NIP_SCHEDULE:
                due = p.birth + dt.timedelta(days=days)
                if due.year == year:
                    done = given.get((pk, code, dose))
                    values.add("nip_vaccination_rate", end, centre, float(done is not None and done <= end),
                               period=str(year))


def _alive_on(city: City, pk: str, day: dt.date) -> bool:
    return city.death_of.get(pk) is None or city.death_of[pk] > day


def _in_effect(city: City, years) -> dict[tuple[str, int], str]:
    """(person, year) → a family-doctor contract in effect in the year: begun (start_date) on or
    before 31 Dec, not recorded before it began, and not ended (end_date) before 1 Jan."""
    out = {}
    for c in city.events("family_doctor_contracts", "contract_id", "start_date"):
        ends = _day(c.row.get("end_date"))
        for y in years:
            if c.day <= dt.date(y, 12, 31) and (ends is None or ends >= dt.date(y, 1, 1)):
                out[(c.person, y)] = c.key
    return out


def population(values: Values, city: City, dropzone: Path) -> None:
    """居民电子健康档案建档率 and 家庭医生签约率, per census year.

    口径 choices: the denominator is the census population of the year (dropzone/reference/
    census_population.csv), counted at the health centre of its township; the numerator the city's
    residents alive on 31 Dec, at their residence township centre, with an archive created on or
    before 31 Dec (建档率) or a contract in effect in the year (签约率). A resident born after the
    census counts in the numerator: the census is what the bureau divides by.
    """
    with open(Path(dropzone) / "reference" / "census_population.csv", encoding="utf-8") as f:
        cells = [r for r in csv.DictReader(f) if r["area_code"] in city.centre_of_area and _int(r["population"]) is not None]
    years = sorted({int(r["year"]) for r in cells})
    for r in cells:
        for ind in ("archive_rate", "family_doctor_contract_rate"):
            values.add(ind, None, city.centre_of_area[r["area_code"]], 0.0, float(_int(r["population"])),
                       period=r["year"])
    archived = {}
    for a in city.events("health_archives", "archive_no", "created_date"):
        archived.setdefault(a.person, min(a.day, archived.get(a.person, a.day)))
    contracts = _in_effect(city, years)
    for y in years:
        end = dt.date(y, 12, 31)
        for pk, p in city.persons.items():
            if p.age_on(end) < 0 or not _alive_on(city, pk, end):
                continue
            centre = city.centre_of_area[p.area_code]
            if pk in archived and archived[pk] <= end:
                values.add("archive_rate", end, centre, 1.0, None, period=str(y))
            if (pk, y) in contracts:
                values.add("family_doctor_contract_rate", end, centre, 1.0, None, period=str(y))


def key_population(values: Values, city: City) -> None:
    """重点人群家庭医生签约率, per year with a contract beginning in it.

    口径 choices: the key groups are what the records show: aged ≥ 65 or 0–6 on 31 Dec, a
    hypertension or diabetes registration dated on or before 31 Dec, a pregnancy registered in the
    year (disabled and poor residents are known only from their contracts, so they cannot be
    counted when they have none); residents alive on 31 Dec, at their residence township centre.
    """
    years = sorted({c.day.year for c in city.events("family_doctor_contracts", "contract_id", "start_date")})
    registered = defaultdict(list)
    for table in ("hypertension_registry", "diabetes_registry"):
        for r in city.events(table, "registry_id", "registered_date"):
            registered[r.person].append(r.day)
    pregnant = {(r.person, r.day.year) for r in city.events("pregnancy_registrations", "pregnancy_id", "registered_date")}
    contracts = _in_effect(city, years)
    for y in years:
        end = dt.date(y, 12, 31)
        for pk, p in city.persons.items():
            age = p.age_on(end)
            if age < 0 or not _alive_on(city, pk, end):
                continue
            if age >= ELDERLY_AGE or age <= CHILD_MAX_AGE or any(d <= end for d in registered[pk]) \
                    or (pk, y) in pregnant:
                values.add("key_population_contract_rate", end, city.centre_of_area[p.area_code],
                           float((pk, y) in contracts), period=str(y))


def archive_use(values: Values, city: City) -> None:
    """健康档案使用率, per year with a service dated in it.

    口径 choices: every archive created on or before 31 Dec whose person had not died before 1 Jan,
    at the archive's institution; in use when its person has a record of one of ARCHIVE_SERVICES
    dated in the year (wherever it was done).
    """
    served = set()
    for table, day in ARCHIVE_SERVICES.items():
        key = REGIONAL[table][0]
        served |= {(e.person, e.day.year) for e in city.events(table, key, day)}
    for y in sorted({y for _, y in served}):
        start, end = dt.date(y, 1, 1), dt.date(y, 12, 31)
        for a in city.events("health_archives", "archive_no", "created_date"):
            died = city.death_of.get(a.person)
            if a.day <= end and (died is None or died >= start):
                values.add("archive_use_rate", end, a.org, float((a.person, y) in served), period=str(y))


def maternal(values: Values, city: City) -> None:
    """早孕建册率 and 产后访视率 over the live births of the year.

    口径 choices: a live birth is a registered pregnancy whose postpartum visits record one (the
    earliest delivery date they record), in the year of delivery, counted at the mother's residence
    township centre if she is a resident alive on 31 Dec; early when registered before week 13 with
    a prenatal visit before week 13; visited when a postpartum visit is 0–28 days after delivery.
    """
    visits = city.events("postpartum_visits", "visit_id", "visit_date")
    born = {}
    for v in visits:
        d = _day(v.row.get("delivery_date"))
        if v.row.get("delivery_outcome") == "live_birth" and d is not None:
            born[v.row["pregnancy_id"]] = min(d, born.get(v.row["pregnancy_id"], d))
    regs = {r.key: r for r in city.events("pregnancy_registrations", "pregnancy_id", "registered_date")}
    early_visit = {v.row["pregnancy_id"] for v in city.events("prenatal_visits", "visit_id", "visit_date")
                   if _int(v.row.get("gestational_weeks")) is not None and _int(v.row["gestational_weeks"]) < EARLY_WEEKS}
    visited = {v.row["pregnancy_id"] for v in visits if v.row["pregnancy_id"] in born
               and 0 <= (v.day - born[v.row["pregnancy_id"]]).days <= POSTPARTUM_DAYS}
    for preg, delivered in born.items():
        reg = regs.get(preg)
        end = dt.date(delivered.year, 12, 31)
        p = reg and city.persons.get(reg.person)
        if not p or p.age_on(end) < 0 or not _alive_on(city, reg.person, end):
            continue
        weeks = _int(reg.row.get("gestational_weeks"))
        centre = city.centre_of_area[p.area_code]
        values.add("early_pregnancy_registration_rate", end, centre,
                   float(weeks is not None and weeks < EARLY_WEEKS and preg in early_visit), period=str(delivered.year))
        values.add("postpartum_visit_rate", end, centre, float(preg in visited), period=str(delivered.year))


def medical(values: Values, city: City) -> None:
    """医疗服务, per month, quarter and year.

    口径 choices:
    - the date of a stay is its discharge date, of a line its prescribed date, of a referral its
      referral date; a row dated after the day its source recorded it counts nowhere (for the
      hospital's FHIR rows, which carry no entry time, the resource's meta.lastUpdated stands in);
    - a member that cannot be judged is no member: a visit without a fee, a stay without a cost, a
      line whose flag is unknown, a prescription all of whose lines have the flag unknown (so the
      city hospital, whose FHIR export carries none of them, has no 次均费用 or 处方比例 value);
    - a prescription is the lines (with the flag known) sharing a visit id; it is dated by its
      earliest such line and counted at that line's institution; every line of silver.prescriptions
      counts as outpatient (only the hospital's lines could be inpatient, and they carry no flags);
    - a line's essential-drug flag from the hospital is whether its drug code is on the delivered
      essential-drug list.
    """
    for v in city.events("outpatient_visits", "visit_id", "visit_date"):
        values.add("outpatient_visits", v.day, v.org, 1.0, None)
        fee = _num(v.row.get("fee_yuan"))
        if fee is not None:
            values.add("outpatient_avg_fee", v.day, v.org, fee)
    for s in city.events("inpatient_stays", "stay_id", "discharge_date"):
        cost = _num(s.row.get("total_cost_yuan"))
        if cost is not None:
            values.add("inpatient_avg_cost", s.day, s.org, cost)
    lines = city.events("prescriptions", "prescription_id", "prescribed_date")
    for line in lines:
        flag = _flag(line.row.get("is_essential_drug"))
        if flag is not None:
            values.add("essential_drug_rate", line.day, line.org, float(flag))
    for ind, column in (("antibiotic_rx_rate", "is_antibiotic"), ("iv_infusion_rx_rate", "is_iv_infusion")):
        rx = defaultdict(list)
        for line in lines:
            flag = _flag(line.row.get(column))
            if flag is not None and not _blank(line.row.get("visit_id")):
                rx[line.row["visit_id"]].append((line.day, line.key, line.org, flag))
        for visit_id, known in rx.items():
            day, _, org, _ = min(known)
            values.add(ind, day, org, float(any(f for *_, f in known)))
    for r in city.events("referrals", "referral_id", "referral_date"):
        ind, org = (("referrals_up", r.row["from_org_code"]) if r.row["direction"] == "up"
                    else ("referrals_down", r.row["to_org_code"]) if r.row["direction"] == "down" else (None, None))
        if ind:
            values.add(ind, r.day, org, 1.0, None)


def remote(values: Values, city: City) -> None:
    """远程诊断, per month, quarter and year.

    口径 choices: a request is dated by the day it was requested, a report by the day it was issued
    (and counted at its reading centre); a report is on time when reported_at − the request's
    start (recorded_at for ECG, images_received_at for imaging) ≤ the limit, inclusive (24 h; 48 h
    for CT and MR), and not negative (a report before its start is not on time); a report whose request is not in silver, or has no start time, is no member.
    """
    for kind, start in (("ecg", "recorded_at"), ("imaging", "images_received_at")):
        requests = {}
        for q in city.events(f"{kind}_requests", "request_id", "requested_at", recorded=False):
            requests[q.key] = q
            if q.day is not None and (q.row["_created"] is None or q.day <= q.row["_created"]):
                values.add(f"remote_{kind}_requests", q.day, q.org, 1.0, None)
        for rep in city.events(f"{kind}_reports", "report_id", "reported_at", org="reading_org_code", person=False):
            q = requests.get(rep.row.get("request_id"))
            started, reported = q and _ts(q.row.get(start)), _ts(rep.row.get("reported_at"))
            if not started or not reported:
                continue
            limit = ECG_LIMIT_HOURS if kind == "ecg" else IMAGING_LIMIT_BY_MODALITY.get(
                q.row.get("modality"), IMAGING_LIMIT_HOURS)
            on_time = 0 <= (reported - started).total_seconds() <= limit * 3600
            values.add(f"remote_{kind}_report_timeliness", rep.day, rep.org, float(on_time))


def independent_indicators(db: Path, dropzone: Path, ground_truth: Path) -> dict[Key, tuple[float, float | None]]:
    """(indicator_id, period, org_level, org_code) → (numerator, denominator) of every indicator of
    the first batch, for every period and org unit with at least one member; the denominator is
    None for a volume. Sums of amounts and prevalences are exact (math.fsum): compare them with the
    platform's with a relative tolerance."""
    city = City(Path(db), Path(dropzone), Path(ground_truth))
    values = Values(city)
    chronic(values, city, "hypertension", HTN_PREVALENCE, bp_controlled,
            ("htn_mgmt_rate", "htn_standard_mgmt_rate", "htn_bp_control_rate"))
    chronic(values, city, "diabetes", DM_PREVALENCE, glucose_controlled,
            ("dm_mgmt_rate", "dm_standard_mgmt_rate", "dm_glucose_control_rate"))
    age_group(values, city, "elderly_health_mgmt_rate", "elderly_checkups", "checkup_id", "checkup_date", ELDERLY_AGE)
    population(values, city, Path(dropzone))
    key_population(values, city)
    archive_use(values, city)
    maternal(values, city)
    vaccination(values, city)
    age_group(values, city, "child_health_mgmt_rate", "child_health_checks", "check_id", "check_date", 0, CHILD_MAX_AGE)
    medical(values, city)
    remote(values, city)
    return values.result()


# ---- staff work points ------------------------------------------------------------------------------

# the service tables that earn work points → (key, column of the staff member, service day)
WORK_SERVICES = {
    "health_archives": ("archive_no", "doctor_id", "created_date"),
    "family_doctor_contracts": ("contract_id", "doctor_id", "signed_date"),
    "hypertension_followups": ("followup_id", "doctor_id", "followup_date"),
    "diabetes_followups": ("followup_id", "doctor_id", "followup_date"),
    "elderly_checkups": ("checkup_id", "doctor_id", "checkup_date"),
    "child_health_checks": ("check_id", "doctor_id", "check_date"),
    "pregnancy_registrations": ("pregnancy_id", "doctor_id", "registered_date"),
    "prenatal_visits": ("visit_id", "doctor_id", "visit_date"),
    "postpartum_visits": ("visit_id", "doctor_id", "visit_date"),
    "immunizations": ("immunization_id", "staff_id", "vaccinated_date"),
    "outpatient_visits": ("visit_id", "doctor_id", "visit_date"),
}


def independent_work_services(db: Path, dropzone: Path, ground_truth: Path) -> tuple[dict, set[str]]:
    """The services that can earn work points, per (service table, staff member, month), for the
    staff of the township centres and village clinics of the counties that deliver through the
    regional database (their records come from it alone); and those staff.

    口径 choices: a record counts in the month of its service day when it names a staff member and
    a person bronze holds, and is not dated after the day its source recorded it."""
    city = City(Path(db), Path(dropzone), Path(ground_truth))
    legacy = {d.name.split("_", 1)[1] for d in Path(dropzone).glob("legacy_*")}
    con = sqlite3.connect(db)
    try:
        staff = {sid for sid, area, level in con.execute(
            "SELECT s.staff_id, o.area_code, o.level FROM staff s JOIN org_units o ON s.org_code = o.org_code "
            "WHERE s.is_deleted = 0 AND o.is_deleted = 0")
                 if level in ("township", "village") and area[:6] not in legacy}
    finally:
        con.close()
    counts: Counter = Counter()
    for table, (key, staff_col, day) in WORK_SERVICES.items():
        for e in city.events(table, key, day):
            who = e.row.get(staff_col)
            if who in staff:
                counts[(table, who, e.day.strftime("%Y-%m"))] += 1
    return dict(counts), staff
