"""Every source kind of the simulated city, ingested together: each lands in bronze, every injected
defect of the parsing kind is in quarantine with its reason, read = loaded + quarantined holds for
every batch, a second run of the same days changes nothing, a crash in the middle of a batch
followed by a rerun gives the tables of an uninterrupted run, and loading day by day gives the
same tables as loading everything at once."""
from __future__ import annotations

import csv
import datetime as dt
import json
import os

import pytest

from ingest.connectors.sources import SOURCE_KINDS, ingest_sources
from ingest.simulator.city import CityConfig, DefectRates, simulate_city
from lakehouse import delta
from lakehouse.faults import InjectedFault
from lakehouse.settings import load_settings

pytestmark = pytest.mark.spark

START = dt.date(2025, 12, 22)
DAYS = 2
# defects a parser can see, and the quarantine reason each must get
PARSING_DEFECTS = {
    "bad_encoding": {"bad_encoding"},
    "malformed_row": {"malformed_row"},
    "invalid_json": {"invalid_json"},
    "truncated_dicom": {"truncated_dicom"},
    "truncated_ecg": {"truncated_ecg"},
    "impossible_date": {"impossible_date"},
}
# load metadata that differs between two loads of the same data by construction
LOAD_TIME = ("_ingested_at",)


def _config() -> CityConfig:
    # remote ECG / imaging used 10× as much as in a typical county, so that a small city has some
    # files in two days; with this seed it has good and truncated ones of both kinds
    return CityConfig(
        residents=2000, counties=2, townships_per_county=3, start=START, days=DAYS, seed=8, remote_uptake=10,
        defects=DefectRates(bad_id_check_digit=0.005, impossible_followup_date=0.01, malformed_row=0.002,
                            invalid_json=0.003, truncated_dicom=0.4, truncated_ecg=0.4, flatline_ecg=0.1))


def _home(tmp_path_factory, name: str, source_home=None):
    """Settings with a new JL_HOME, or, given ``source_home``, the same JL_HOME (the same source
    database, deliveries and landing copies) with a lake of its own."""
    if source_home is None:
        return load_settings({**os.environ, "JL_HOME": str(tmp_path_factory.mktemp(name))})
    lake = tmp_path_factory.mktemp(name) / "lake"
    return load_settings({**os.environ, "JL_HOME": str(source_home), "LAKE_ROOT": str(lake)})


@pytest.fixture(scope="module")
def city(spark, tmp_path_factory):
    s = _home(tmp_path_factory, "sources")
    sim = simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root, _config())
    results = ingest_sources(spark, s)
    return s, sim, results


def _tables(s) -> list[str]:
    root = s.lake_root
    out = []
    for layer in ("bronze", "quarantine", "ops"):
        base = os.path.join(root, layer)
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            if os.path.isdir(os.path.join(base, name, "_delta_log")):
                out.append(f"{layer}.{name}")
    return out


def _path(s, table: str) -> str:
    return f"{s.lake_root}/{table.replace('.', '/')}"


def _content(spark, s, tables=None, drop=LOAD_TIME) -> dict:
    """Order-independent content of each table, without the columns in ``drop``."""
    out = {}
    for t in tables or _tables(s):
        df = spark.read.format("delta").load(_path(s, t))
        df = df.drop(*[c for c in drop if c in df.columns])
        if t == "ops.ingest_batches":
            df = df.drop("started_at", "finished_at", "rows_inserted", "rows_updated", "rows_unchanged")
        hashes = sorted(r[0] for r in df.select(delta.row_hash(df, exclude=()).alias("h")).collect())
        out[t] = hashes
    return out


def test_every_source_kind_lands_in_bronze(spark, city):
    s, sim, results = city
    assert set(results) == set(SOURCE_KINDS)
    bronze = [t for t in _tables(s) if t.startswith("bronze.")]
    for prefix in ("bronze.reference__", "bronze.regional__", "bronze.legacy_", "bronze.fhir_",
                   "bronze.dicom__", "bronze.ecg__"):
        tables = [t for t in bronze if t.startswith(prefix)]
        assert tables, f"no bronze table of {prefix}"
        assert sum(spark.read.format("delta").load(_path(s, t)).count() for t in tables) > 0, prefix
    # the regional database row for row: every source row is in bronze or in quarantine
    import sqlite3

    con = sqlite3.connect(s.source_sqlite_path)
    for table, n in sim.rows.items():
        loaded = spark.read.format("delta").load(_path(s, f"bronze.regional__{table}")).count()
        q = _path(s, f"quarantine.regional__{table}")
        rejected = spark.read.format("delta").load(q).count() if delta.table_exists(spark, q) else 0
        assert loaded + rejected == con.execute(f"SELECT count(*) FROM {table}").fetchone()[0], table
    con.close()


def test_every_parsing_defect_is_quarantined_with_its_reason(spark, city):
    s, sim, _ = city
    with open(s.ground_truth_dir / "defects.csv", encoding="utf-8") as f:
        injected = [r for r in csv.DictReader(f) if r["defect"] in PARSING_DEFECTS]
    assert {r["defect"] for r in injected} == set(PARSING_DEFECTS), "every parsing defect class was injected"

    quarantined: dict[str, list] = {}

    def rows_of(table: str) -> list:
        if table not in quarantined:
            p = _path(s, table)
            quarantined[table] = (spark.read.format("delta").load(p).collect()
                                  if delta.table_exists(spark, p) else [])
        return quarantined[table]

    missing = []
    for d in injected:
        source, entity, key, defect = d["source"], d["entity"], d["record_key"], d["defect"]
        if source in ("dicom", "ecg"):  # files: the manifest names the request, the file carries it
            hits = [r for r in rows_of(f"quarantine.{source}__files")
                    if json.loads(r.raw_payload).get("request_id") == key]
        else:
            table_entity = {"MedicationRequest": "medication_request"}.get(entity, entity.lower())
            hits = [r for r in rows_of(f"quarantine.{source}__{table_entity}") if r.record_key == key]
        if not any(r.reason_code in PARSING_DEFECTS[defect] for r in hits):
            missing.append((source, entity, key, defect, [r.reason_code for r in hits]))
    assert not missing, f"{len(missing)} of {len(injected)} injected defects not quarantined: {missing[:10]}"


def test_every_batch_reconciles_and_every_file_is_recorded(spark, city):
    s, _, results = city
    batches = spark.read.format("delta").load(_path(s, "ops.ingest_batches")).collect()
    assert len(batches) == sum(1 for rs in results.values() for r in rs if r.batch_id)
    for b in batches:
        assert b.rows_read == b.rows_loaded + b.rows_quarantined, b.batch_id
    files = spark.read.format("delta").load(_path(s, "ops.landed_files")).collect()
    delivered = {p.relative_to(s.dropzone_root).as_posix() for p in s.dropzone_root.rglob("*") if p.is_file()}
    recorded = {f"{f.source}/{f.rel_path}" for f in files}
    assert delivered <= recorded | {p for p in delivered if p.endswith(".dat")} , delivered - recorded
    for f in files:
        assert f.status in ("loaded", "quarantined", "skipped") and (f.status != "quarantined" or f.reason)
        assert os.path.isfile(f.landing_path), "every delivered file has its landing copy"


def test_a_second_run_of_the_same_days_changes_nothing(spark, city):
    s, _, _ = city
    tables = _tables(s)
    versions = {t: delta.table_version(spark, _path(s, t)) for t in tables}
    before = _content(spark, s, tables, drop=())
    again = ingest_sources(spark, s)
    assert all(r.rows_read == 0 for rs in again.values() for r in rs), "nothing new: nothing read"
    assert {t: delta.table_version(spark, _path(s, t)) for t in tables} == versions
    reread = ingest_sources(spark, s, full=True)
    assert all(r.inserted == r.updated == 0 for rs in reread.values() for r in rs)
    assert _content(spark, s, tables, drop=()) == before
    assert _tables(s) == tables


def test_a_crash_mid_batch_then_a_rerun_gives_the_uninterrupted_tables(spark, city, tmp_path_factory):
    s, _, _ = city
    crashed = _home(tmp_path_factory, "crashed", source_home=s.home)
    legacy = next(t for t in _tables(s) if t.startswith("bronze.legacy_")).split(".", 1)[1]
    points = [f"after_bronze:{legacy}", "after_bronze:fhir_CH350900__encounter", "before_watermarks"]
    os.environ["JL_FAULT_INJECT"] = ",".join(points)
    try:
        with pytest.raises(InjectedFault):
            ingest_sources(spark, crashed, ("reference", "legacy"))
        with pytest.raises(InjectedFault):
            ingest_sources(spark, crashed, ("fhir",))
    finally:
        del os.environ["JL_FAULT_INJECT"]
    ingest_sources(spark, crashed)
    assert _content(spark, crashed) == _content(spark, s)


def test_loading_day_by_day_gives_the_same_tables_as_loading_at_once(spark, city, tmp_path_factory):
    s, _, _ = city
    daily = _home(tmp_path_factory, "daily", source_home=s.home)
    for d in range(DAYS + 1):  # the intervals ending at start, start+1, …: a backfill
        ingest_sources(spark, daily, until=START + dt.timedelta(days=d))
    # compare the data; batches differ (one per day instead of one per run)
    data = [t for t in _tables(s) if not t.startswith("ops.")]
    assert _content(spark, daily, data, drop=LOAD_TIME + ("_batch_id",)) == \
        _content(spark, s, data, drop=LOAD_TIME + ("_batch_id",))
