"""The relational connector against the simulated regional database: quarantine with reasons,
read = loaded + quarantined, day-by-day increments carry inserts, corrections and soft deletes,
reruns and crashes change nothing, schema drift is loaded, and PostgreSQL works like SQLite."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import tempfile

import pytest

from ingest.connectors import relational
from ingest.simulator.city import CityConfig, DefectRates, simulate_city
from lakehouse import delta
from lakehouse.faults import InjectedFault
from lakehouse.settings import REPO_ROOT

pytestmark = pytest.mark.spark

START = dt.date(2025, 12, 22)


def _config(days: int) -> CityConfig:
    # the second county is the legacy one: half the city is in the regional database; more
    # corrections and deletions than the defaults, so that a few days of a small city have some
    return CityConfig(residents=1500, counties=2, townships_per_county=2, start=START, days=days,
                      media_files=False,
                      defects=DefectRates(bad_id_check_digit=0.0, impossible_followup_date=0.0,
                                          corrected=0.3, deleted=0.1))


def _simulate(s, days: int):
    return simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root, _config(days))


def _rows(spark, s, table):
    return spark.read.format("delta").load(f"{s.lake_root}/{table.replace('.', '/')}")


def _tables() -> list[str]:
    return ([f"bronze.regional__{e.name}" for e in relational.entities()]
            + ["ops.ingest_batches", "ops.watermarks"])


def _snapshot(spark, s, tables=None) -> dict:
    out = {}
    for t in tables or _tables():
        path = f"{s.lake_root}/{t.replace('.', '/')}"
        out[t] = delta.content_hash(spark, path) if delta.table_exists(spark, path) else None
    return out


def _bronze_content(spark, s) -> dict:
    """Bronze content without the load metadata (batch id and load time differ by load path)."""
    out = {}
    for e in relational.entities():
        df = _rows(spark, s, f"bronze.regional__{e.name}")
        data = df.drop("_batch_id", "_ingested_at")
        out[e.name] = sorted(r[0] for r in data.select(delta.row_hash(data, exclude=()).alias("h")).collect())
    return out


@pytest.fixture
def city(settings_for):
    s = settings_for("city")
    _simulate(s, days=3)
    return s


def test_malformed_rows_land_in_quarantine_with_their_reason(spark, city):
    s = city
    con = sqlite3.connect(s.source_sqlite_path)
    r1, r2, r3 = (r[0] for r in con.execute(
        "SELECT resident_id FROM residents WHERE id_card_no IS NOT NULL ORDER BY resident_id LIMIT 3"))
    con.execute("UPDATE residents SET id_card_no = substr(id_card_no, 1, 17) || "
                "CASE substr(id_card_no, 18, 1) WHEN '1' THEN '2' ELSE '1' END WHERE resident_id = ?", (r1,))
    fid = con.execute("SELECT followup_id FROM hypertension_followups ORDER BY followup_id LIMIT 1").fetchone()[0]
    con.execute("UPDATE hypertension_followups SET followup_date = '2025-02-30' WHERE followup_id = ?", (fid,))
    con.execute("UPDATE residents SET birth_date = '1988-13-01' WHERE resident_id = ?", (r2,))
    n_residents = con.execute("SELECT count(*) FROM residents").fetchone()[0]
    con.commit()
    con.close()

    relational.ingest(spark, s)

    q = {r.record_key: r for r in _rows(spark, s, "quarantine.regional__residents").collect()}
    assert r1 not in q, "an invalid ID-card number is kept as received: the EMPI judges it in silver"
    assert q[r2].reason_code == "impossible_date"
    assert f'"resident_id":"{r2}"' in q[r2].raw_payload
    fq = {r.record_key: r.reason_detail for r in _rows(spark, s, "quarantine.regional__hypertension_followups").collect()}
    assert fq[fid] == "impossible_date:followup_date"
    bronze_ids = {r.resident_id for r in _rows(spark, s, "bronze.regional__residents").select("resident_id").collect()}
    assert r1 in bronze_ids and r2 not in bronze_ids and r3 in bronze_ids

    batches = _rows(spark, s, "ops.ingest_batches").collect()
    assert {b.entity for b in batches} == {e.name for e in relational.entities()}
    for b in batches:
        assert b.rows_read == b.rows_loaded + b.rows_quarantined, b.batch_id
    by_entity = {b.entity: b for b in batches}
    assert by_entity["residents"].rows_read == n_residents
    assert by_entity["residents"].rows_quarantined == len(q) >= 1


def test_identifiers_in_quarantine_payloads_are_masked(spark, city):
    s = city
    con = sqlite3.connect(s.source_sqlite_path)
    rid, name, phone = con.execute("SELECT resident_id, name, phone FROM residents ORDER BY resident_id").fetchone()
    con.execute("UPDATE residents SET birth_date = '1988-13-01' WHERE resident_id = ?", (rid,))
    con.commit()
    con.close()
    relational.ingest(spark, s)
    payload = _rows(spark, s, "quarantine.regional__residents").where(f"record_key = '{rid}'").first().raw_payload
    assert name not in payload and phone not in payload


def test_daily_increments_carry_inserts_corrections_and_deletes_like_a_full_load(spark, settings_for):
    """The lake of day 2 follows the source to day 9 (as-of 2025-12-30) by watermark."""
    day2, day9, full = settings_for("day2"), settings_for("day9"), settings_for("full")
    _simulate(day2, days=2)
    relational.ingest(spark, day2)
    before = {e.name: {r[0]: r for r in _rows(spark, day2, f"bronze.regional__{e.name}").collect()}
              for e in relational.entities()}

    # the source one day later: the same lake follows it by watermark
    shutil.copyfile(_simulate(day9, days=9).source_db_url.removeprefix("sqlite:///"), day2.source_sqlite_path)
    results = {r.table: r for r in relational.ingest(spark, day2)}
    read_on_day3 = sum(r.rows_read for r in results.values())
    assert read_on_day3 > 0
    # only the new days' changes were read, not the history again
    total_source_rows = sum(_rows(spark, day2, f"bronze.regional__{e.name}").count() for e in relational.entities())
    assert read_on_day3 < total_source_rows / 5

    con = sqlite3.connect(day2.source_sqlite_path)
    changed = {}
    for e in relational.entities():
        rows = con.execute(f"SELECT {e.key}, is_deleted, created_at FROM {e.name} "
                           "WHERE updated_at >= '2025-12-24'").fetchall()
        changed[e.name] = rows
    con.close()
    corrections = [(t, k) for t, rows in changed.items() for k, deleted, created in rows
                   if created < "2025-12-24" and not deleted and k in before[t]]
    deletions = [(t, k) for t, rows in changed.items() for k, deleted, created in rows if deleted]
    inserts = [(t, k) for t, rows in changed.items() for k, deleted, created in rows if created >= "2025-12-24"]
    assert corrections and deletions and inserts, "the simulated days have corrections, deletions and inserts"
    for t, k in deletions[:20]:
        e = next(e for e in relational.entities() if e.name == t)
        row = _rows(spark, day2, f"bronze.regional__{t}").where(f"{e.key} = '{k}'").first()
        assert row.is_deleted == 1, f"the soft delete of {t} {k} is a tombstone in bronze"
    for t, k in corrections[:20]:
        e = next(e for e in relational.entities() if e.name == t)
        row = _rows(spark, day2, f"bronze.regional__{t}").where(f"{e.key} = '{k}'").first()
        assert row.updated_at >= "2025-12-24" and row.updated_at != before[t][k].updated_at

    # the increments give the same bronze as one load of the day-9 source
    full = _with_source(full, day9)
    relational.ingest(spark, full)
    assert _bronze_content(spark, day2) == _bronze_content(spark, full)


def _with_source(target, source_settings):
    """Ingest ``source_settings``' database into ``target``'s lake; returns ``target``."""
    from lakehouse.settings import load_settings

    return load_settings({**os.environ, "JL_HOME": str(target.home), "SOURCE_DB_URL": source_settings.source_db_url})


def test_reruns_and_full_rereads_change_nothing(spark, city):
    s = city
    relational.ingest(spark, s)
    versions = {t: delta.table_version(spark, f"{s.lake_root}/{t.replace('.', '/')}") for t in _tables()}
    before = _snapshot(spark, s)
    for full in (False, True):
        results = relational.ingest(spark, s, full=full)
        assert all(r.inserted == r.updated == 0 for r in results)
        assert _snapshot(spark, s) == before, f"rerun (full={full}) changed a table"
    assert {t: delta.table_version(spark, f"{s.lake_root}/{t.replace('.', '/')}") for t in _tables()} == versions


def test_a_crash_mid_batch_then_a_rerun_gives_the_uninterrupted_tables(spark, city, settings_for, monkeypatch):
    crashed = _with_source(settings_for("crashed"), city)
    clean = _with_source(settings_for("clean"), city)
    relational.ingest(spark, clean)

    for point in ("after_bronze:regional__hypertension_followups", "before_watermarks"):
        monkeypatch.setenv("JL_FAULT_INJECT", point)
        with pytest.raises(InjectedFault):
            relational.ingest(spark, crashed)
    monkeypatch.delenv("JL_FAULT_INJECT")
    relational.ingest(spark, crashed)
    assert _bronze_content(spark, crashed) == _bronze_content(spark, clean)
    wm = {r.entity: r.watermark for r in _rows(spark, crashed, "ops.watermarks").collect()}
    assert wm == {r.entity: r.watermark for r in _rows(spark, clean, "ops.watermarks").collect()}


def test_the_until_bound_loads_only_the_data_interval(spark, city):
    s = city
    relational.ingest(spark, s, until=dt.date(2025, 12, 23))
    latest = max(_rows(spark, s, "ops.watermarks").select("watermark").rdd.flatMap(lambda r: r).collect())
    assert latest < "2025-12-23"
    relational.ingest(spark, s, until=dt.date(2025, 12, 25))
    latest = max(_rows(spark, s, "ops.watermarks").select("watermark").rdd.flatMap(lambda r: r).collect())
    assert "2025-12-24" <= latest < "2025-12-25"


def test_a_new_source_column_is_recorded_and_loaded(spark, city):
    s = city
    relational.ingest(spark, s)
    con = sqlite3.connect(s.source_sqlite_path)
    con.execute("ALTER TABLE residents ADD COLUMN wechat_id TEXT")
    rid = con.execute("SELECT resident_id FROM residents WHERE id_card_no IS NOT NULL ORDER BY resident_id").fetchone()[0]
    con.execute("UPDATE residents SET wechat_id = 'wx_0007', updated_at = '2025-12-31 23:00:00' "
                "WHERE resident_id = ?", (rid,))
    con.commit()
    con.close()
    relational.ingest(spark, s)
    row = _rows(spark, s, "bronze.regional__residents").where(f"resident_id = '{rid}'").first()
    assert row.wechat_id == "wx_0007"
    changes = _rows(spark, s, "ops.schema_changes").collect()
    assert [(c.table_name, c.column_name, c.change) for c in changes] == [
        ("bronze.regional__residents", "wechat_id", "added")]


@pytest.fixture(scope="module")
def postgres_url():
    """A real PostgreSQL server (Debian's packages) started by the project's own script."""
    data_dir = tempfile.mkdtemp(prefix="jiceng-pg-")  # under /tmp: the postgres user can reach it
    port = "55433"
    script = REPO_ROOT / "infra" / "postgres"
    done = subprocess.run(["bash", str(script / "start.sh"), data_dir, port], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield done.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(script / "stop.sh"), data_dir], capture_output=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_postgresql_source_loads_the_same_bronze_as_sqlite(spark, city, settings_for, postgres_url):
    pg = settings_for("pg", SOURCE_DB_URL=postgres_url)
    _simulate(pg, days=3)
    relational.ingest(spark, pg)
    relational.ingest(spark, city)
    assert _bronze_content(spark, pg) == _bronze_content(spark, city)
    results = relational.ingest(spark, pg)
    assert all(r.rows_read == 0 for r in results), "nothing new in PostgreSQL: nothing read"
