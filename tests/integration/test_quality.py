"""Record flags on the conformed small city, measured against the simulator's ground truth: every
injected defect class is caught by a quarantine reason or a flag, and each flag class finds its
defects with recall ≥ 0.9 and precision ≥ 0.8; flags carry a Chinese reason and evidence without
identifiers, and a rerun changes nothing."""
from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from lakehouse import delta
from spark_jobs.quality.authenticity import RECORD_FLAGS, compute_flags
from spark_jobs.quality.evaluate import DEFECT_FLAGS, evaluate

pytestmark = pytest.mark.spark

# caught on ingest, with these quarantine reasons (tests/integration/test_sources.py checks them)
QUARANTINED_ON_INGEST = {"impossible_date", "bad_encoding", "malformed_row", "invalid_json"}


@pytest.fixture(scope="module")
def flagged(spark, conformed_city):
    s, _, _ = conformed_city
    return s, compute_flags(spark, s.lake_root)


def test_every_injected_defect_class_is_caught_by_some_check(flagged):
    s, _ = flagged
    with open(s.ground_truth_dir / "defects.csv", encoding="utf-8") as f:
        injected = {r["defect"] for r in csv.DictReader(f)}
    assert injected - QUARANTINED_ON_INGEST - set(DEFECT_FLAGS) == set()


def test_each_flag_class_finds_its_defects(spark, flagged):
    s, result = flagged
    scores = evaluate(spark, s.lake_root, s.ground_truth_dir / "defects.csv")
    print("\n" + "\n".join(f"{c.defect:<32}{c.flag:<28} defects {c.defects:>5} flags {c.flags:>5} "
                           f"caught {c.caught:>5}  P {c.precision:.3f}  R {c.recall:.3f}" for c in scores))
    measured = [c for c in scores if c.defects]
    assert len(measured) >= 8, "the city has defects of most classes"
    low = [c for c in scores if (c.defects or c.flags) and (c.recall < 0.9 or c.precision < 0.8)]
    assert not low, low


def test_dormant_archives_are_exactly_those_without_a_service_in_a_year(spark, flagged):
    s, _ = flagged
    from spark_jobs.conform.entities import BY_NAME
    from spark_jobs.quality.authenticity import DORMANT_DAYS, SERVICE_ENTITIES

    last: dict[str, dt.date] = {}
    for name in SERVICE_ENTITIES:
        for r in spark.read.format("delta").load(f"{s.lake_root}/silver/{name}").select(
                "person_id", BY_NAME[name].event).collect():
            day = r[1] if isinstance(r[1], dt.date) else None
            if day and (r.person_id not in last or day > last[r.person_id]):
                last[r.person_id] = day
    cutoff = max(last.values()) - dt.timedelta(days=DORMANT_DAYS)
    expected = {a.archive_no for a in spark.read.format("delta").load(f"{s.lake_root}/silver/health_archives").collect()
                if a.created_date <= cutoff and (a.person_id not in last or last[a.person_id] < cutoff)}
    flagged_ = {f.record_id for f in delta.read(spark, RECORD_FLAGS, s.lake_root).where("flag = 'dormant_archive'").collect()}
    assert expected and flagged_ == expected


def test_flags_explain_themselves_without_identifiers(spark, flagged):
    s, _ = flagged
    con = sqlite3.connect(s.source_sqlite_path)
    secrets = {v for row in con.execute("SELECT name, id_card_no, phone FROM residents") for v in row if v}
    con.close()
    flags = delta.read(spark, RECORD_FLAGS, s.lake_root).collect()
    assert flags
    for f in flags:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in f.reason), f.reason      # Chinese, for evaluators
        json.loads(f.evidence)
        assert not any(x in f.reason or x in f.evidence for x in secrets if len(x) > 2), f
    authenticity = [f for f in flags if f.category == "authenticity" and f.flag != "duplicate_registration"]
    assert authenticity and all(f.person_id and f.org_code for f in authenticity)


def test_a_rerun_changes_nothing(spark, flagged):
    """Silver as it was: the checks are skipped and the flags counted as they are; checked again
    from scratch, they find the same flags."""
    s, first = flagged
    before = delta.table_version(spark, RECORD_FLAGS.path(s.lake_root))
    skipped = compute_flags(spark, s.lake_root)
    assert skipped.table == {} and skipped.flags == first.flags
    again = compute_flags(spark, s.lake_root, force=True)
    assert not (again.table["inserted"] or again.table["updated"] or again.table["deleted"])
    assert again.flags == first.flags
    assert delta.table_version(spark, RECORD_FLAGS.path(s.lake_root)) == before


def test_every_bronze_row_is_accounted_for(spark, conformed_city):
    from spark_jobs.quality.reconcile import reconcile

    s, _, _ = conformed_city
    rows = reconcile(spark, s.lake_root)
    assert any(r.bronze_table.startswith("bronze.legacy_") for r in rows)
    for r in rows:
        assert r.read == r.quarantined_on_ingest + r.loaded, r
        assert r.loaded == r.in_bronze + r.superseded + r.unchanged, r
        assert r.in_bronze == r.deleted_at_source + r.in_silver + r.quarantined_on_conformance, r
        assert r.unaccounted == 0, r
    assert sum(r.deleted_at_source for r in rows), "the city deleted some records at the source"


@pytest.fixture(scope="module")
def scorecard(spark, flagged):
    from spark_jobs.quality.scorecard import DQ_SCORECARD, compute_scorecard

    s, _ = flagged
    compute_scorecard(spark, s.lake_root)
    return s, delta.read(spark, DQ_SCORECARD, s.lake_root).collect()


def test_the_scorecard_counts_every_record_once_and_reflects_its_flags(spark, scorecard):
    """Recounted here record by record (Python, not Spark SQL): each institution-month's records,
    those with an authenticity flag and those uploaded late or dated in the future."""
    from collections import Counter

    from spark_jobs.conform.entities import ENTITIES

    s, card = scorecard
    flags = delta.read(spark, RECORD_FLAGS, s.lake_root).select("source", "entity", "record_id", "flag",
                                                                  "category").collect()
    suspect = {(f.source, f.entity, f.record_id) for f in flags if f.category == "authenticity"}
    late = {(f.source, f.entity, f.record_id) for f in flags if f.flag in ("late_upload", "future_date")}
    records, authentic, timely = Counter(), Counter(), Counter()
    for e in ENTITIES:
        # as text in the session's time zone (collect() would turn timestamps into this process's)
        for r in spark.read.format("delta").load(f"{s.lake_root}/silver/{e.name}").selectExpr(
                "source", e.key, "org_code", f"CAST({e.event} AS STRING)", "CAST(source_created_at AS STRING)").collect():
            day = r[3] or r[4]
            cell = (r.org_code, day[:7] if day else "unknown")
            rid = (r.source, e.bronze, str(r[1]))
            records[cell] += 1
            authentic[cell] += rid not in suspect
            timely[cell] += e.timely and rid not in late
    got = {(r.org_code, r.month): r for r in card}
    assert set(got) == set(records)
    for cell, n in records.items():
        row = got[cell]
        assert (row.records, row.authentic_records, row.timely_records) == (n, authentic[cell], timely[cell]), cell
        rates = [row.completeness, row.timeliness, row.conformance, row.authenticity]
        assert all(0 <= x <= 1 for x in rates if x is not None) and 0 <= row.score <= 100
    assert any(r.authenticity < 1 for r in card) and any(r.timeliness < 1 for r in card if r.timeliness is not None)
    assert all(r.org_name for r in card), "every institution is named for the evaluators"


def test_the_scorecard_is_built_again_only_when_its_inputs_change(spark, scorecard):
    from spark_jobs.quality.scorecard import DQ_SCORECARD, compute_scorecard

    s, card = scorecard
    before = delta.table_version(spark, DQ_SCORECARD.path(s.lake_root))
    assert compute_scorecard(spark, s.lake_root) == {"unchanged": True}
    forced = compute_scorecard(spark, s.lake_root, force=True)
    assert forced["unchanged"] == len(card) and not (forced["inserted"] or forced["updated"] or forced["deleted"])
    assert delta.table_version(spark, DQ_SCORECARD.path(s.lake_root)) == before


def test_quality_report_prints_reconciliation_scorecard_and_data_docs(spark, scorecard, monkeypatch):
    from typer.testing import CliRunner

    from lakehouse import pipeline
    from lakehouse.cli import app
    from lakehouse.settings import get_settings

    s, card = scorecard
    pipeline.validate_bronze(s, tables=["bronze.regional__org_units"])      # builds the Data Docs site
    monkeypatch.setenv("JL_HOME", str(s.home))
    monkeypatch.setenv("LAKE_ROOT", s.lake_root)
    # rich tables: no wrapped lines. The console reads COLUMNS when lakehouse.cli is imported,
    # which may be before this test (an xdist worker imports every module it collects)
    from lakehouse import cli
    monkeypatch.setattr(cli.console, "width", 250)
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["quality", "report", "--worst", "3"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert "unaccounted rows: 0" in out.output
    latest = max(r.month for r in card if r.month != "unknown")
    worst = min((r for r in card if r.month == latest), key=lambda r: (r.score, r.org_code))
    assert f"Data-quality scorecard {latest}" in out.output and worst.org_code in out.output
    docs = out.output.split("Data Docs: ", 1)[1].split()[0]
    assert docs.startswith("file://") and Path(docs.removeprefix("file://")).is_file()
