"""Ingestion benchmark: the platform's relational connector against a plain Spark copy.

Loads the same simulated regional source database (a) through ``ingest.connectors.relational``
(hard rules, quarantine, MERGE on key + row hash, batch records, watermarks) and (b) through a plain
``spark.read.jdbc`` + ``write.format("delta")`` of the same rows, in one process, and prints rows/s
of both and their ratio. Then it changes a day's worth of source rows (1/365 of each table's rows
get a new ``updated_at``) and times the incremental load, relative to the full load.

    .venv/bin/python benchmarks/bench_ingest.py --residents 100000

Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=20000)
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's JL_HOME")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jiceng-bench-ingest-"))
    os.environ.update(JL_HOME=str(home), JL_ENV=os.environ.get("JL_ENV", "CI"))
    from ingest.connectors.relational import ENTITIES, ingest_all, jdbc_options
    from ingest.simulator.city import CityConfig, simulate_city
    from lakehouse.settings import get_settings
    from lakehouse.spark import get_spark

    s = get_settings()
    t0 = time.monotonic()
    sim = simulate_city(s.source_db_url, home / "gt", CityConfig(residents=args.residents))
    rows = sum(sim.rows.values())
    print(f"simulated {args.residents:,} residents → {rows:,} source rows in {time.monotonic() - t0:.1f} s")

    spark = get_spark(s, app_name="bench-ingest")
    spark.range(1).write.format("delta").mode("overwrite").save(str(home / "warmup"))  # JVM warm-up

    t0 = time.monotonic()
    for e in ENTITIES:
        df = (spark.read.format("jdbc").options(**jdbc_options(s.source_db_url))
              .option("dbtable", e.name).option("fetchsize", "10000").load())
        df.write.format("delta").mode("overwrite").save(str(home / "plain" / e.name))
    plain_s = time.monotonic() - t0

    t0 = time.monotonic()
    results = ingest_all(spark, s.lake_root, s.source_db_url)
    connector_s = time.monotonic() - t0
    loaded = sum(r.rows_read for r in results)
    assert loaded == rows, (loaded, rows)

    con = sqlite3.connect(s.source_sqlite_path)
    changed = 0
    for e in ENTITIES:
        cur = con.execute(f"UPDATE {e.name} SET updated_at = '2099-01-01 00:00:00' "
                          f"WHERE rowid % 365 = 0")
        changed += cur.rowcount
    con.commit()
    con.close()
    t0 = time.monotonic()
    inc = ingest_all(spark, s.lake_root, s.source_db_url)
    incremental_s = time.monotonic() - t0
    assert sum(r.rows_read for r in inc) == changed

    print(f"{'path':<34}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    print(f"{'plain spark.read + write delta':<34}{rows:>12,}{plain_s:>10.1f}{rows / plain_s:>12,.0f}")
    print(f"{'platform connector (full load)':<34}{rows:>12,}{connector_s:>10.1f}{rows / connector_s:>12,.0f}")
    print(f"connector / plain throughput ratio: {plain_s / connector_s:.2f}")
    print(f"incremental day ({changed:,} changed rows): {incremental_s:.1f} s = "
          f"{incremental_s / connector_s:.0%} of the full load")
    spark.stop()
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
