"""The whole slice on a small simulated city: every step runs for real (Spark + Delta, GX, dbt,
DuckDB, XLSX, Superset import), the published numbers equal an independent computation from the
sources (the regional database and the legacy county's CSV exports), a second run changes
nothing, and no direct identifier leaves the raw zones."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import sqlite3
import time
from pathlib import Path

import duckdb
import openpyxl
import pytest

from ingest.simulator.city import DefectRates
from lakehouse import delta, pipeline
from lakehouse.cli import table_rows
from lakehouse.settings import load_settings
from oracle import _legacy_exports, independent_indicators, independent_work_services

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

# raw zones: rows as received, identifiers included; access-restricted like `restricted`
RAW_LAYERS = ("bronze", "restricted")


@pytest.fixture(scope="module")
def city(spark, tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("e2e")
    s = load_settings({**os.environ, "JL_HOME": str(home)})
    t0 = time.monotonic()
    # impossible dates 5× as often as by default, so that a city this small surely has some
    sim = pipeline.simulate(s, residents=2000, counties=3, townships_per_county=5,
                            defects=DefectRates(impossible_followup_date=0.01))
    summary = pipeline.run_all(s)
    print(f"\nfirst run of the slice: {time.monotonic() - t0:.0f} s")
    return s, sim, summary


def _lake_snapshot(spark, s) -> dict[str, tuple[int, str]]:
    root = Path(s.lake_root)
    return {f"{layer.name}.{t.name}": delta.content_hash(spark, str(t))
            for layer in sorted(root.iterdir()) if layer.is_dir() and not layer.name.startswith("_")
            for t in sorted(layer.iterdir()) if (t / "_delta_log").is_dir()}


def _serving_snapshot(s) -> dict[str, str]:
    con = duckdb.connect(str(s.serving_duckdb_path), read_only=True)
    out = {}
    for (name,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
        if name == "_export_manifest":  # records the exported gold version, which dbt bumps per run
            continue
        rows = con.execute(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall()
        out[name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    con.close()
    return out


def _report_cells(path: str) -> list[tuple]:
    ws = openpyxl.load_workbook(path).active
    return [r for r in ws.iter_rows(values_only=True) if not (r[0] or "").startswith("生成时间")]


# ---- the independent computation: plain Python over the sources ----------------------------

def independent_htn_standard_management(db: Path, dropzone: Path, duplicate_persons: Path) -> dict[tuple[int, str], tuple[int, int]]:
    """(year, org_code) → (numerator, denominator) of 高血压患者规范管理率 for every township,
    county and the city, computed straight from the sources (:mod:`oracle`): the regional database,
    the legacy county's CSV exports and the hospital's FHIR export, with the simulator's true
    persons (its ``duplicate_persons.csv``) where the platform has its EMPI."""
    values = independent_indicators(db, dropzone, Path(duplicate_persons).parent)
    return {(int(period), org): (int(num), int(den)) for (ind, period, level, org), (num, den) in values.items()
            if ind == "htn_standard_mgmt_rate" and level in ("township", "county", "city")}


def _townships_with_patients(db: Path, dropzone: Path) -> set[str]:
    """The townships with hypertensive patients: in the regional database, or in the legacy
    county's exports."""
    con = sqlite3.connect(db)
    with_patients = {org for (org,) in con.execute("SELECT DISTINCT org_code FROM hypertension_registry")}
    with_patients |= {r["管理机构"] for r in _legacy_exports(dropzone, "GXYDJ", "登记编号", {})}
    units = {c: (lvl, parent) for c, lvl, parent in con.execute("SELECT org_code, level, parent_code FROM org_units")}
    con.close()
    return {c if units[c][0] == "township" else units[c][1] for c in with_patients
            if units[c][0] in ("township", "village")}


# ---- tests -----------------------------------------------------------------------------------

def test_every_catalogued_indicator_equals_the_independent_computation(spark, city):
    """Every catalogued indicator, every period and every org unit: the engine's numerator and
    denominator equal the ones computed in plain Python from the simulator's sources (tests/e2e/
    oracle.py), and every indicator has values for a township, a county and the city."""
    from spark_jobs.indicators.catalog import load_catalog

    s, _, _ = city
    expected = independent_indicators(s.source_sqlite_path, s.dropzone_root, s.ground_truth_dir)
    got = {(r.indicator_id, r.period, r.org_level, r.org_code): (r.numerator, r.denominator) for r in
           spark.read.format("delta").load(f"{s.lake_root}/silver/indicator_values").collect()}
    catalogue = load_catalog().indicators
    assert {k[0] for k in got} == set(catalogue) == {k[0] for k in expected}
    assert got.keys() == expected.keys(), (sorted(got.keys() - expected.keys())[:5],
                                           sorted(expected.keys() - got.keys())[:5])
    wrong = {k: (got[k], expected[k]) for k in got
             if not (math.isclose(got[k][0], expected[k][0], rel_tol=1e-9, abs_tol=1e-9)
                     and (got[k][1] is None) == (expected[k][1] is None)
                     and (got[k][1] is None or math.isclose(got[k][1], expected[k][1], rel_tol=1e-9, abs_tol=1e-9)))}
    assert not wrong, sorted(wrong.items())[:10]
    for ind in catalogue.values():
        levels = {k[2] for k in got if k[0] == ind.id}
        assert {"county", "city"} <= levels and ("township" in levels or "township" not in ind.levels), ind.id


def test_explain_takes_a_value_apart_down_to_the_members(spark, city, monkeypatch):
    """`lakehouse indicators explain`: the value, its parts, target and score, and the first members
    on each side with their reasons; the members it counts are the published numerator."""
    from typer.testing import CliRunner

    from lakehouse.cli import app
    from lakehouse.settings import get_settings

    s, _, _ = city
    value = (spark.read.format("delta").load(f"{s.lake_root}/silver/indicator_values")
             .where("indicator_id = 'htn_standard_mgmt_rate' AND org_level = 'township' AND period = '2025' "
                    "AND numerator >= 3 AND numerator < denominator").orderBy("org_code").first())
    monkeypatch.setenv("JL_HOME", str(s.home))
    monkeypatch.setenv("LAKE_ROOT", s.lake_root)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    try:
        args = ["indicators", "explain", "htn_standard_mgmt_rate", "--org", value.org_code, "--period", "2025",
                "--level", "township"]
        shown = CliRunner().invoke(app, args)
        as_json = CliRunner().invoke(app, [*args, "--json", "--limit", "3"])
        missing = CliRunner().invoke(app, ["indicators", "explain", "htn_standard_mgmt_rate", "--org", "NOPE",
                                           "--period", "2025"])
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert "高血压患者规范管理率" in shown.output and value.org_code in shown.output
    assert f"{value.numerator:,.0f}（" in shown.output and "目标值" in shown.output and "得分" in shown.output
    assert "规范管理：年内面对面随访" in shown.output and "未达规范：年内面对面随访仅" in shown.output
    out = json.loads(as_json.output)
    assert out["value"]["org_level"] == "township"
    assert out["members_in_numerator"] == value.numerator
    assert out["members_in_numerator"] + out["members_outside_numerator"] == value.denominator
    assert len(out["numerator_members"]) == 3 and all(m["reason"].startswith("规范管理") for m in out["numerator_members"])
    assert missing.exit_code == 2 and "没有找到指标" in missing.output


def test_an_institution_whose_follow_ups_were_fabricated_loses_score_with_the_adjustment(spark, city):
    """The simulator's fabricated follow-ups (a doctor's impossible daily workload) are recorded
    at one township centre per county; once the authenticity adjustment is applied, such a centre
    does not keep full marks for what its follow-ups built, and a centre without flags keeps its score."""
    s, _, _ = city
    with open(s.ground_truth_dir / "defects.csv", encoding="utf-8") as f:
        fabricated = {r["record_key"] for r in csv.DictReader(f) if r["defect"] == "implausible_daily_workload"}
    con = sqlite3.connect(s.source_sqlite_path)
    fabricating = {org for key, org in con.execute("SELECT followup_id, org_code FROM hypertension_followups")
                   if key in fabricated}
    con.close()
    values = spark.read.format("delta").load(f"{s.lake_root}/silver/indicator_values").where(
        "indicator_id = 'htn_bp_control_rate' AND org_level = 'institution' AND period = '2025'").collect()
    by_org = {v.org_code: v for v in values}
    hit = [by_org[o] for o in fabricating if o in by_org and by_org[o].authenticity_flagged and by_org[o].score]
    assert hit, "the fabricated follow-ups are flagged at the institutions that recorded them"
    for v in hit:
        assert v.authenticity_coefficient < 1 and v.adjusted_score < v.score, v
    clean = [v for v in values if v.org_code not in fabricating and v.score]
    assert clean and all(v.adjusted_score == v.score for v in clean if not v.authenticity_flagged)


def test_staff_work_points_count_every_service_and_void_fabricated_ones(spark, city):
    """工分: for every staff member of the regional counties' township centres and village clinics,
    every month and service item, the records behind the points equal the services counted in
    plain Python from the sources (oracle.py); points = Σ the catalogue's points of the credited
    records × the quality coefficient. The doctors whose follow-ups the simulator fabricated earn
    nothing for those the quality job flags (the records say why) and lose points that month;
    silver.staff holds no names."""
    from pyspark.sql import functions as F

    from spark_jobs.indicators.catalog import load_catalog

    s, _, _ = city
    scheme = load_catalog().workpoints
    expected, staff = independent_work_services(s.source_sqlite_path, s.dropzone_root, s.ground_truth_dir)
    table_of = {i.id: i.table for i in scheme.items}
    records = spark.read.format("delta").load(f"{s.lake_root}/silver/staff_workpoint_records")
    got = {(table_of[r.item_id], r.staff_id, r.period): r.n for r in
           records.where(F.col("staff_id").isin(sorted(staff)) & ~F.col("reason").contains("时间矛盾"))
           .groupBy("item_id", "staff_id", "period").agg(F.count("*").alias("n")).collect()}
    assert got == expected and len({k[0] for k in got}) >= 8, (
        sorted(set(got.items()) ^ set(expected.items()))[:10])

    months = {(r.staff_id, r.period): r for r in
              spark.read.format("delta").load(f"{s.lake_root}/silver/staff_workpoints").collect()}
    points = {i.id: i.points for i in scheme.items}
    credited = {}
    for r in records.where("staff_id IS NOT NULL").collect():
        credited.setdefault((r.staff_id, r.period), []).append(points[r.item_id] if r.credited else 0.0)
    assert credited.keys() == months.keys()
    for k, m in months.items():
        assert math.isclose(m.raw_points, math.fsum(credited[k]), abs_tol=1e-6), (k, m)
        assert scheme.quality_floor <= m.quality_coefficient <= 1
        assert math.isclose(m.corrected_points, m.raw_points * m.quality_coefficient, abs_tol=1e-5), (k, m)

    with open(s.ground_truth_dir / "defects.csv", encoding="utf-8") as f:
        fabricated = {r["record_key"] for r in csv.DictReader(f) if r["defect"] == "implausible_daily_workload"}
    # the fabricated follow-ups the quality job flags (its recall: tests/integration/test_quality.py)
    # earn nothing, and say why
    voided_rows = records.where(F.col("record_id").isin(sorted(fabricated)) & F.col("item_id").endswith("_followup")
                                & F.col("void_flags").contains("implausible_daily_workload")).collect()
    assert voided_rows and all(not r.credited and r.credited_points == 0
                               and r.reason == "不计分：真实性存疑（implausible_daily_workload）" for r in voided_rows)
    for who, period in {(r.staff_id, r.period) for r in voided_rows}:
        m = months[(who, period)]
        assert m.voided_services > 0 and m.raw_points < math.fsum(
            points[r.item_id] for r in records.where((F.col("staff_id") == who) & (F.col("period") == period))
            .collect()), m
    assert "name" not in spark.read.format("delta").load(f"{s.lake_root}/silver/staff").columns


def test_every_published_number_equals_the_independent_computation(city):
    s, _, _ = city
    expected = independent_htn_standard_management(s.source_sqlite_path, s.dropzone_root,
                                                   s.ground_truth_dir / "duplicate_persons.csv")
    con = duckdb.connect(str(s.serving_duckdb_path), read_only=True)
    published = {(y, code): (num, den, lvl) for y, code, num, den, lvl in con.execute(
        "SELECT period_year, org_code, numerator, denominator, org_level FROM mart_hypertension_management").fetchall()}
    con.close()
    assert {k: v[:2] for k, v in published.items()} == expected
    townships = {code for (_, code), v in published.items() if v[2] == "township"}
    assert townships == _townships_with_patients(s.source_sqlite_path, s.dropzone_root), "every township has a value"
    assert {v[2] for v in published.values()} == {"township", "county", "city"}


def test_every_batch_reconciles_and_every_injected_defect_is_quarantined(spark, city):
    s, sim, _ = city
    batches = spark.read.format("delta").load(f"{s.lake_root}/ops/ingest_batches").collect()
    assert batches
    for b in batches:
        assert b.rows_read == b.rows_loaded + b.rows_quarantined, b.batch_id
    # the regional database's parsing defects (every source kind's: tests/integration/test_sources.py)
    with open(sim["manifest_path"], encoding="utf-8") as f:
        expected = {(r["entity"], r["record_key"]) for r in csv.DictReader(f) if r["source"] == "regional"
                    and r["defect"] == "impossible_date"}
    assert expected, "the simulator injected defects"
    found = set()
    for entity in {e for e, _ in expected}:
        for r in spark.read.format("delta").load(f"{s.lake_root}/quarantine/regional__{entity}").collect():
            found.add((entity, r.record_key))
            assert r.reason_code == "impossible_date"
    assert found >= expected
    # a wrong check digit is no reason to lose a resident: silver has the record, with its status
    with open(sim["manifest_path"], encoding="utf-8") as f:
        bad_ids = {r["record_key"] for r in csv.DictReader(f) if r["source"] == "regional"
                   and r["defect"] == "bad_id_check_digit" and r["entity"] == "residents"}
    xref = {r.source_record_id: r.id_card_status for r in spark.read.format("delta").load(
        f"{s.lake_root}/silver/person_xref").where("source = 'regional' AND source_entity = 'residents'").collect()}
    assert bad_ids and {xref.get(k) for k in bad_ids} == {"id_card_bad_check_digit"}


def test_no_direct_identifier_outside_the_raw_zones(spark, city):
    s, _, _ = city
    con = sqlite3.connect(s.source_sqlite_path)
    secrets = set()
    for no, phone, name in con.execute("SELECT id_card_no, phone, name FROM residents"):
        secrets.update({no, phone})
    numbers = re.compile(r"\d{11}[\dX]*")
    for name in table_rows(s.lake_root):
        if name.split(".")[0] in RAW_LAYERS:
            continue
        df = spark.read.format("delta").load(f"{s.lake_root}/{name.replace('.', '/')}")
        assert not {"name", "id_card_no", "phone", "address"} & set(df.columns), name
        text_cols = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        for row in df.select(*text_cols).collect():
            for value in row:
                leaked = set(numbers.findall(value or "")) & secrets
                assert not leaked, f"{name} holds an identifier"
    identity = spark.read.format("delta").load(f"{s.lake_root}/restricted/person_identity")
    assert identity.count() > 0 and "id_card_no" in identity.columns


def test_report_data_docs_and_dashboard_are_there(city):
    s, _, summary = city
    report = summary["build_reports"]
    rows = _report_cells(report["path"])
    header = next(i for i, r in enumerate(rows) if r[0] == "县（区）")
    township_rows = [r for r in rows[header + 1:] if r[2] and r[2].startswith("H")]
    assert len(township_rows) == report["townships"] == len(_townships_with_patients(s.source_sqlite_path, s.dropzone_root))
    con = duckdb.connect(str(s.serving_duckdb_path), read_only=True)
    mart = {code: (num, den) for code, num, den in con.execute(
        "SELECT org_code, numerator, denominator FROM mart_hypertension_management "
        "WHERE org_level = 'township' AND period_year = ?", [report["year"]]).fetchall()}
    con.close()
    assert {r[2]: (r[3], r[4]) for r in township_rows} == mart
    assert any("计算所用数据版本" in (r[0] or "") for r in rows[:6]), "the report names the data versions"

    docs = Path(summary["validate_bronze"]["data_docs"]).read_text(encoding="utf-8")
    assert "bronze__regional__residents" in docs
    bronze = {f"bronze.{d.name}" for d in (Path(s.lake_root) / "bronze").iterdir() if (d / "_delta_log").is_dir()}
    assert set(summary["validate_bronze"]["tables"]) == bronze, "every bronze table has a suite"
    assert any(t.startswith("bronze.legacy_") for t in bronze) and any(t.startswith("bronze.fhir_") for t in bronze)
    assert summary["validate_bronze"]["held"] == summary["validate_silver"]["held"] == {}
    assert "bronze__legacy_" in docs and "silver__hypertension_followups" in docs
    # the remote-ECG worklist and turnaround marts are in the serving database the dashboards read
    con = duckdb.connect(str(s.serving_duckdb_path), read_only=True)
    worklist = con.execute("SELECT count(*), count(DISTINCT request_id) FROM mart_ecg_worklist").fetchone()
    turnaround = con.execute("SELECT coalesce(sum(requests), 0) FROM mart_ecg_turnaround").fetchone()[0]
    # and the remote-imaging ones: one row per request, its study when the images were catalogued
    imaging = con.execute("SELECT count(*), count(DISTINCT request_id), count(study_instance_uid) "
                          "FROM mart_imaging_worklist").fetchone()
    imaging_turnaround = con.execute("SELECT coalesce(sum(requests), 0), coalesce(sum(studies_received), 0) "
                                     "FROM mart_imaging_turnaround").fetchone()
    con.close()
    from deltalake import DeltaTable

    requests = len(DeltaTable(f"{s.lake_root}/silver/ecg_requests").to_pandas(columns=["request_id"]))
    assert worklist == (requests, requests) and turnaround == requests and requests > 0
    img_requests = len(DeltaTable(f"{s.lake_root}/silver/imaging_requests").to_pandas(columns=["request_id"]))
    studies = DeltaTable(f"{s.lake_root}/silver/imaging_studies").to_pandas(columns=["request_id"])
    linked = studies.request_id.dropna().nunique()
    assert imaging == (img_requests, img_requests, linked) and imaging_turnaround == (img_requests, linked)
    assert img_requests > 0 and linked > 0

    meta = sqlite3.connect(s.home / "superset" / "superset.db")
    titles = [t for (t,) in meta.execute("SELECT dashboard_title FROM dashboards")]
    assert titles == ["高血压患者规范管理 — 基层绩效考核"]


def test_running_the_pipeline_again_changes_nothing(spark, city):
    s, _, summary = city
    lake, serving = _lake_snapshot(spark, s), _serving_snapshot(s)
    report = _report_cells(summary["build_reports"]["path"])
    t0 = time.monotonic()
    again = pipeline.ingest(s, full=True)  # re-read every source row, not only new ones
    assert all(b["inserted"] == b["updated"] == 0 for b in again["batches"])
    second = pipeline.run_all(s)
    print(f"\nsecond run of the slice: {time.monotonic() - t0:.0f} s")
    assert _lake_snapshot(spark, s) == lake
    assert _serving_snapshot(s) == serving
    assert _report_cells(second["build_reports"]["path"]) == report
    # no input changed: no table version is validated again, and the EMPI, the flags, the
    # scorecard and gold are skipped, reporting what they hold
    assert not [t for step in ("validate_bronze", "validate_silver") for t, r in second[step]["tables"].items()
                if r["validated"]]
    assert second["conform"]["empi"] == summary["conform"]["empi"]
    assert second["flag_records"]["flags"] == summary["flag_records"]["flags"]
    assert second["score_quality"]["scorecard"] == {"unchanged": True}
    assert second["build_gold"] == {"unchanged": True}
    # every indicator is skipped, at the versions of the first run
    indicators = second["compute_indicators"]["indicators"]
    assert "_tables" not in indicators and all(r.get("unchanged") for r in indicators.values()), indicators
    assert second["compute_indicators"]["workpoints"].get("unchanged"), second["compute_indicators"]["workpoints"]
    assert indicators["htn_standard_mgmt_rate"]["input_versions"] \
        == summary["compute_indicators"]["indicators"]["htn_standard_mgmt_rate"]["input_versions"]
