import csv
import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from ingest.simulator import contracts, legacy_spec, source_schema
from ingest.simulator.city import DEFECT_CODES, CityConfig, DefectRates, simulate_city
from lakehouse import idcard

SMALL = dict(counties=2, townships_per_county=3)
HIGH = DefectRates(bad_id_check_digit=0.05, impossible_followup_date=0.05, duplicate_person_name_variant=0.05,
                   followup_after_death=1.0, impossible_vitals=0.05, future_date=0.02, copied_followup=0.2,
                   implausible_daily_workload=0.2, late_arriving=0.1, corrected=0.2, deleted=0.1,
                   bad_encoding=0.1, malformed_row=0.02, invalid_json=0.02, truncated_dicom=0.5,
                   truncated_ecg=0.4, flatline_ecg=0.4)


def _city(tmp_path, name, residents=600, **kw):
    cfg = CityConfig(residents=residents, **{**SMALL, "media_files": False, **kw})
    root = tmp_path / name
    return simulate_city(f"sqlite:///{root / 'src.sqlite'}", root / "gt", root / "dropzone", cfg)


def _rows(db) -> dict[str, dict[str, tuple]]:
    """table → primary key → row."""
    con = sqlite3.connect(db)
    out = {}
    for t in source_schema.TABLES:
        cols = [c.name for c in t.columns]
        key = cols.index(source_schema.key_of(t))
        out[t.name] = {r[key]: r for r in con.execute(f"SELECT * FROM {t.name}")}
    con.close()
    return out


def _file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(summary) -> list[dict]:
    with open(summary.manifest_path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_same_seed_same_city_other_seed_other_city(tmp_path):
    a = _city(tmp_path, "a", media_files=True)
    b = _city(tmp_path, "b", media_files=True)
    _city(tmp_path, "c", seed=7)
    assert _rows(tmp_path / "a" / "src.sqlite") == _rows(tmp_path / "b" / "src.sqlite")
    assert _rows(tmp_path / "a" / "src.sqlite") != _rows(tmp_path / "c" / "src.sqlite")
    assert _file_hashes(tmp_path / "a" / "dropzone") == _file_hashes(tmp_path / "b" / "dropzone")
    assert _file_hashes(tmp_path / "a" / "gt") == _file_hashes(tmp_path / "b" / "gt")
    assert a.rows == b.rows and a.files == b.files and a.as_of == dt.date(2025, 12, 31)
    # residents of the legacy (last) county are not in the regional database
    assert 0 < a.rows["residents"] < 600


def test_rerun_into_the_same_places_rewrites_identically_and_drops_later_days(tmp_path):
    root = tmp_path / "x"
    args = (f"sqlite:///{root / 'src.sqlite'}", root / "gt", root / "dropzone")
    simulate_city(*args, CityConfig(residents=300, days=5, **SMALL, media_files=False))
    simulate_city(*args, CityConfig(residents=300, days=2, **SMALL, media_files=False))
    after = _file_hashes(root / "dropzone")
    fresh = tmp_path / "y"
    simulate_city(f"sqlite:///{fresh / 'src.sqlite'}", fresh / "gt", fresh / "dropzone",
                  CityConfig(residents=300, days=2, **SMALL, media_files=False))
    assert after == _file_hashes(fresh / "dropzone")
    assert not any("2025-12-24" in p for p in after)
    assert _rows(root / "src.sqlite") == _rows(fresh / "src.sqlite")


def test_a_day_later_adds_that_day_and_changes_no_history(tmp_path):
    rates = DefectRates(**{**HIGH.__dict__, "corrected": 0.5, "deleted": 0.3})
    s3 = _city(tmp_path, "d3", residents=1500, days=3, defects=rates)
    s4 = _city(tmp_path, "d4", residents=1500, days=4, defects=rates)
    day4 = "2025-12-25"
    r3, r4 = _rows(tmp_path / "d3" / "src.sqlite"), _rows(tmp_path / "d4" / "src.sqlite")
    inserted = changed = deleted = 0
    for table, rows in r4.items():
        cols = [c.name for c in source_schema.metadata.tables[table].columns]
        created, updated, is_del = cols.index("created_at"), cols.index("updated_at"), cols.index("is_deleted")
        assert set(r3[table]) <= set(rows), table
        for key, row in rows.items():
            old = r3[table].get(key)
            if old is None:
                assert row[created][:10] == day4, (table, key)
                inserted += 1
            elif old != row:
                assert row[updated][:10] == day4 and old[updated][:10] < day4, (table, key)
                changed += 1
                deleted += row[is_del] > old[is_del]
            else:
                assert row[updated][:10] < day4
    assert inserted and changed
    # the files of days <= 3 are byte-identical; day 4 adds a folder per dated source
    h3, h4 = _file_hashes(tmp_path / "d3" / "dropzone"), _file_hashes(tmp_path / "d4" / "dropzone")
    assert {k: v for k, v in h4.items() if day4 not in k and "reference" not in k} == \
        {k: v for k, v in h3.items() if "reference" not in k}
    assert any(k.startswith(f"legacy_350921/{day4}/GXYSF_") for k in h4)
    # the ground truth only grows
    m3 = {tuple(r.values()) for r in _manifest(s3)}
    m4 = {tuple(r.values()) for r in _manifest(s4)}
    assert m3 < m4
    new_on_day4 = {defect for (_, _, _, defect, detail) in m4 - m3 if day4 in detail}
    assert {"corrected", "deleted"} <= new_on_day4
    assert s3.as_of == dt.date(2025, 12, 24) and s4.as_of == dt.date(2025, 12, 25)


def test_invalid_id_numbers_and_impossible_dates_are_exactly_the_injected_ones(tmp_path):
    s = _city(tmp_path, "e", defects=DefectRates(bad_id_check_digit=0.05, impossible_followup_date=0.05))
    manifest = {(r["source"], r["entity"], r["record_key"], r["defect"]) for r in _manifest(s)}
    con = sqlite3.connect(tmp_path / "e" / "src.sqlite")
    invalid = {rid for rid, no in con.execute("SELECT resident_id, id_card_no FROM residents")
               if no is not None and not idcard.is_valid(no)}
    injected = {k for (src, _, k, d) in manifest if d == "bad_id_check_digit" and src == "regional"}
    assert invalid and invalid == injected
    bad_dates = {fid for t in ("hypertension_followups", "diabetes_followups")
                 for fid, d in con.execute(f"SELECT followup_id, followup_date FROM {t}")
                 if d[5:7] == "13" or d[5:] == "02-30"}
    assert bad_dates and bad_dates == {k for (src, _, k, d) in manifest if d == "impossible_date" and src == "regional"}
    # the ID cards of the legacy county too
    legacy = {row["居民编号"]: row["身份证号"] for row in _legacy_rows(tmp_path / "e" / "dropzone", "JMXX")}
    assert {k for k, no in legacy.items() if no and not idcard.is_valid(no)} == \
        {k for (src, _, k, d) in manifest if d == "bad_id_check_digit" and src.startswith("legacy_")}


def _legacy_rows(dropzone: Path, prefix: str):
    for path in sorted(dropzone.glob(f"legacy_*/*/{prefix}_*.csv")):
        lines = path.read_bytes().split(b"\r\n")
        header = lines[0].decode("gbk").split(",")
        for line in lines[1:]:
            try:
                fields = line.decode("gbk").split(",")
            except UnicodeDecodeError:
                continue
            if len(fields) == len(header):
                yield dict(zip(header, fields))


def test_every_defect_class_is_injected_and_in_the_manifest(tmp_path):
    rates = DefectRates(**{**HIGH.__dict__, "truncated_dicom": 1.0})   # few exams in a small city
    s = _city(tmp_path, "f", residents=4000, defects=rates, media_files=True)
    assert set(s.defects) == set(DEFECT_CODES)
    rows = _manifest(s)
    assert {r["source"] for r in rows} == {"regional", "legacy_350921", "fhir_CH350900", "dicom", "ecg"}
    assert s.files["dicom"] > 0 and s.files["ecg"] > 0
    # every duplicate person shares a person key with the original record
    with open(Path(s.duplicate_persons_path), encoding="utf-8") as f:
        dups = list(csv.DictReader(f))
    key_of = {(d["source"], d["record_key"]): d["person_key"] for d in dups}
    for r in rows:
        if r["defect"] == "duplicate_person_name_variant":
            original = r["detail"].split(":")[0].removeprefix("of ")
            assert key_of[(r["source"], r["record_key"])] == key_of[(r["source"], original)]


def test_legacy_exports_are_gbk_except_the_injected_rows(tmp_path):
    s = _city(tmp_path, "g", defects=HIGH)
    manifest = _manifest(s)
    bad_enc = {r["record_key"] for r in manifest if r["defect"] == "bad_encoding"}
    malformed = {r["record_key"] if "#line" in r["record_key"] else r["detail"].split(":")[0]
                 for r in manifest if r["defect"] == "malformed_row"}
    assert bad_enc and malformed
    root = tmp_path / "g" / "dropzone" / "legacy_350921"
    seen_bad, seen_malformed = set(), set()
    specs = {e.file_prefix: e for e in legacy_spec.EXPORTS}
    for path in sorted(root.glob("*/*.csv")):
        lines = path.read_bytes().split(b"\r\n")
        assert lines[-1] == b""
        header = lines[0].decode("gbk").split(",")
        prefix = path.name.rsplit("_", 1)[0]
        if prefix in specs:
            assert header == specs[prefix].headers
        for n, line in enumerate(lines[1:-1], start=2):
            try:
                fields = line.decode("gbk").split(",")
            except UnicodeDecodeError:
                seen_bad.add(line.split(b",")[0].decode("ascii"))
                continue
            if len(fields) != len(header):
                seen_malformed.add(f"{path.relative_to(root).as_posix()}#line{n}")
    assert seen_bad == bad_enc
    assert seen_malformed == malformed


def test_fhir_export_is_valid_ndjson_except_the_injected_lines(tmp_path):
    s = _city(tmp_path, "h", residents=1500, defects=HIGH)
    broken_rows = [r for r in _manifest(s) if r["defect"] == "invalid_json"]
    broken = {r["record_key"] for r in broken_rows}
    root = tmp_path / "h" / "dropzone" / "fhir_CH350900"
    unparsable, resources, n_bad = set(), [], 0
    for day in sorted(p for p in root.iterdir()):
        manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
        assert {o["type"] for o in manifest["output"]} == {"Patient", "Encounter", "Condition",
                                                           "MedicationRequest", "Observation"}
        for f in sorted(day.glob("*.ndjson")):
            for line in f.read_text(encoding="utf-8").splitlines():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    n_bad += 1
                    if f.name != "deleted.ndjson":   # a tombstone's key is at its end, maybe cut off
                        unparsable.add(line.split('"id":"')[1].split('"')[0])
                    continue
                resources.append(obj)
                if f.name == "deleted.ndjson":
                    assert obj["type"] == "transaction" and obj["entry"][0]["request"]["method"] == "DELETE"
                else:
                    assert obj["resourceType"] == f.stem and obj["meta"]["lastUpdated"].endswith("+08:00")
    assert broken and unparsable <= broken and n_bad == len(broken_rows)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    systems = {i["system"] for p in patients for i in p["identifier"]}
    assert systems == {"urn:oid:2.16.156.10011.1.5.1.6", "urn:oid:2.16.156.10011.1.12.CH350900"}
    assert {p["gender"] for p in patients} == {"male", "female"}
    ids = {(r["resourceType"], r["id"]) for r in resources if r["resourceType"] != "Bundle"}
    for r in resources:
        if r["resourceType"] in ("Encounter", "Condition", "MedicationRequest", "Observation"):
            assert r["subject"]["reference"].startswith("Patient/")
    codes = {c["code"] for r in resources if r["resourceType"] == "Observation" for c in r["code"]["coding"]}
    assert codes == {"85354-9", "1558-6"}
    assert {"AMB", "IMP"} == {r["class"]["code"] for r in resources if r["resourceType"] == "Encounter"}
    assert ids


def test_contracts_agree_with_the_schema_and_the_files(tmp_path):
    regional = yaml.safe_load((contracts.CONTRACTS_DIR / "regional.yaml").read_text(encoding="utf-8"))
    tables = {t["name"]: t for t in regional["tables"]}
    assert list(tables) == [t.name for t in source_schema.TABLES]
    for t in source_schema.TABLES:
        entry = tables[t.name]
        assert entry["key"] == source_schema.key_of(t) and t.c[entry["key"]].primary_key
        for col in entry.get("date_columns", []):
            assert col in t.c
        assert set(entry.get("date_columns", [])) == set(source_schema.columns_of_kind(t, "date"))
        assert entry.get("id_card_column") in (None, *t.c.keys())
        assert {"created_at", "updated_at", "is_deleted"} <= set(t.c.keys())
    for path, text in contracts.rendered().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: python -m ingest.simulator.contracts"
    legacy = yaml.safe_load((contracts.CONTRACTS_DIR / "legacy_350923.yaml").read_text(encoding="utf-8"))
    assert legacy["source"] == "legacy_350923" and legacy["encoding"] == "gbk"
    required = {"residents", "health_archives", "hypertension_registry", "hypertension_followups",
                "diabetes_registry", "diabetes_followups", "outpatient_visits"}
    assert required <= {e["entity"] for e in legacy["exports"]}
    for e in legacy["exports"]:   # standard names are the regional columns
        cols = set(source_schema.metadata.tables[e["entity"]].c.keys())
        assert set(e["columns"].values()) <= cols and e["key"] in e["columns"].values()
        assert set(e["dates"]) <= set(e["columns"].values())


def test_records_hang_together_and_stay_in_the_time_window(tmp_path):
    s = _city(tmp_path, "i", residents=800)
    con = sqlite3.connect(tmp_path / "i" / "src.sqlite")
    levels = dict(con.execute("SELECT level, count(*) FROM org_units GROUP BY level"))
    assert levels["city"] == 2 and levels["township"] == 6 and levels["village"] >= 18
    assert con.execute("SELECT count(*) FROM org_units WHERE parent_code IS NOT NULL "
                       "AND parent_code NOT IN (SELECT org_code FROM org_units)").fetchone()[0] == 0
    for child, parent, key in (("hypertension_followups", "hypertension_registry", "registry_id"),
                               ("diabetes_followups", "diabetes_registry", "registry_id"),
                               ("prescriptions", "outpatient_visits", "visit_id"),
                               ("ecg_reports", "ecg_requests", "request_id"),
                               ("imaging_reports", "imaging_requests", "request_id"),
                               ("prenatal_visits", "pregnancy_registrations", "pregnancy_id")):
        orphans = con.execute(f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p USING ({key}) "
                              f"WHERE p.{key} IS NULL").fetchone()[0]
        assert orphans == 0, child
    assert con.execute("SELECT count(*) FROM residents WHERE area_code LIKE '350921%'").fetchone()[0] == 0
    for t in source_schema.TABLES:
        latest = con.execute(f"SELECT max(created_at), max(updated_at) FROM {t.name}").fetchone()
        assert all(v is None or v <= "2025-12-31 23:59:59" for v in latest), t.name
    first_visit = con.execute("SELECT min(visit_date) FROM outpatient_visits").fetchone()[0]
    assert first_visit.startswith("2024-01")
    for table, n in s.rows.items():
        assert n > 0, table
    census = list(csv.DictReader(open(tmp_path / "i" / "dropzone" / "reference" / "census_population.csv",
                                      encoding="utf-8")))
    assert 800 * 0.9 <= sum(int(r["population"]) for r in census) <= 800 * 1.1   # mid-year, born and alive
    assert {r["area_code"][:6] for r in census} == {"350902", "350921"}


def test_the_as_of_day_must_be_within_the_horizon(tmp_path):
    with pytest.raises(ValueError):
        _city(tmp_path, "j", residents=10, days=400)
