"""The relational connector: quarantine with reasons, read = loaded + quarantined, incremental
loads carry corrections and soft deletes, and reruns change nothing."""
from __future__ import annotations

import sqlite3

import pytest

from ingest.connectors.relational import ENTITIES, ingest_all
from ingest.simulator.city import CityConfig, DefectRates, simulate_city
from lakehouse import delta

pytestmark = pytest.mark.spark


@pytest.fixture
def city(settings_for):
    s = settings_for("city")
    simulate_city(s.source_db_url, s.home / "gt",
                  CityConfig(residents=300, counties=1, townships_per_county=2,
                             defects=DefectRates(bad_id_check_digit=0.0, impossible_followup_date=0.0)))
    return s


def _rows(spark, s, table):
    return spark.read.format("delta").load(f"{s.lake_root}/{table.replace('.', '/')}")


def test_malformed_rows_land_in_quarantine_with_their_reason(spark, city):
    s = city
    con = sqlite3.connect(s.source_sqlite_path)
    con.execute("UPDATE residents SET id_card_no = substr(id_card_no, 1, 17) || "
                "CASE substr(id_card_no, 18, 1) WHEN '1' THEN '2' ELSE '1' END WHERE resident_id = 'R00000003'")
    fid = con.execute("SELECT followup_id FROM hypertension_followups LIMIT 1").fetchone()[0]
    con.execute("UPDATE hypertension_followups SET followup_date = '2025-02-30' WHERE followup_id = ?", (fid,))
    con.execute("UPDATE residents SET birth_date = '1988-13-01' WHERE resident_id = 'R00000004'")
    con.commit()
    con.close()

    ingest_all(spark, s.lake_root, s.source_db_url)

    q = {r.record_key: r for r in _rows(spark, s, "quarantine.regional__residents").collect()}
    assert q["R00000003"].reason_code == "id_card_bad_check_digit"
    assert q["R00000004"].reason_code == "impossible_date"
    assert '"resident_id":"R00000003"' in q["R00000003"].raw_payload
    fq = {r.record_key: r.reason_detail for r in _rows(spark, s, "quarantine.regional__hypertension_followups").collect()}
    assert fq == {fid: "impossible_date:followup_date"}
    bronze_ids = {r.resident_id for r in _rows(spark, s, "bronze.regional__residents").select("resident_id").collect()}
    assert "R00000003" not in bronze_ids and "R00000004" not in bronze_ids and "R00000005" in bronze_ids

    for b in _rows(spark, s, "ops.ingest_batches").collect():
        assert b.rows_read == b.rows_loaded + b.rows_quarantined, b.batch_id
    by_entity = {b.entity: b for b in _rows(spark, s, "ops.ingest_batches").collect()}
    assert by_entity["residents"].rows_quarantined == 2 and by_entity["residents"].rows_read == 300


def test_incremental_load_applies_corrections_and_deletes_and_reruns_are_no_ops(spark, city):
    s = city
    ingest_all(spark, s.lake_root, s.source_db_url)
    tables = [f"bronze.regional__{e.name}" for e in ENTITIES] + ["ops.ingest_batches", "ops.watermarks"]
    before = {t: delta.content_hash(spark, f"{s.lake_root}/{t.replace('.', '/')}") for t in tables}

    for full in (False, True):  # nothing new, then a full re-read of everything
        results = ingest_all(spark, s.lake_root, s.source_db_url, full=full)
        assert all(r.inserted == r.updated == 0 for r in results)
        after = {t: delta.content_hash(spark, f"{s.lake_root}/{t.replace('.', '/')}") for t in tables}
        assert after == before, f"rerun (full={full}) changed a table"

    con = sqlite3.connect(s.source_sqlite_path)
    fid = con.execute("SELECT followup_id FROM hypertension_followups ORDER BY followup_id LIMIT 1").fetchone()[0]
    con.execute("UPDATE hypertension_followups SET sbp_mmhg = 199, updated_at = '2099-01-01 08:00:00' WHERE followup_id = ?", (fid,))
    con.execute("UPDATE residents SET is_deleted = 1, updated_at = '2099-01-01 08:00:00' WHERE resident_id = 'R00000010'")
    con.commit()
    con.close()
    results = {r.table: r for r in ingest_all(spark, s.lake_root, s.source_db_url)}
    assert results["bronze.regional__hypertension_followups"].rows_read == 1
    assert results["bronze.regional__hypertension_followups"].updated == 1
    fu = _rows(spark, s, "bronze.regional__hypertension_followups").where(f"followup_id = '{fid}'").first()
    assert fu.sbp_mmhg == 199
    res = _rows(spark, s, "bronze.regional__residents").where("resident_id = 'R00000010'").first()
    assert res.is_deleted == 1, "a soft delete at the source is carried into bronze as a tombstone"
