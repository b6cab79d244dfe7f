"""Ingestion benchmark: the platform's connectors against a plain Spark copy of the same rows.

Simulates the city (``--days`` days from 2025-12-22, DICOM/ECG files off unless ``--media``), then,
in one process and on the same source data:

(a) the platform's connectors (``ingest.connectors.sources.ingest_sources``: reference, regional
    database over JDBC, legacy GBK CSV, FHIR NDJSON), loading everything delivered before the
    last simulated day: hard rules, quarantine, latest version per key, MERGE on key + row hash,
    batch records, file manifest, watermarks;
(b) a plain ``spark.read`` (JDBC with the same ``updated_at`` bound; CSV with the GBK encoding;
    the NDJSON lines) + ``write.format("delta")`` of the same files and rows;

and prints rows/s of both and their ratio. Then it loads the last simulated day through the
connectors (the daily increment: new rows, corrections, deletions, that day's files) and prints
its cost relative to the full load.

    .venv/bin/python benchmarks/bench_ingest.py --residents 100000

Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

START = dt.date(2025, 12, 22)


def _plain_copy(spark, s, until: dt.date, out: Path) -> int:
    """spark.read + write delta of every source row delivered before ``until``; returns rows."""
    import yaml

    from ingest.connectors.relational import entities, jdbc_options

    rows = 0
    bound = f"{until:%Y-%m-%d} 00:00:00"
    for e in entities():
        df = (spark.read.format("jdbc").options(**jdbc_options(s.source_db_url))
              .option("dbtable", f"(SELECT * FROM {e.name} WHERE updated_at < '{bound}') src")
              .option("fetchsize", "10000").load())
        df.write.format("delta").mode("overwrite").save(str(out / "regional" / e.name))
        rows += spark.read.format("delta").load(str(out / "regional" / e.name)).count()

    def day_files(source: str, pattern: str) -> list[str]:
        base = s.dropzone_root / source
        return sorted(str(p) for d in base.iterdir() if d.is_dir() and d.name < f"{until}"
                      for p in d.glob(pattern)) if base.is_dir() else []

    contracts = Path(__file__).resolve().parent.parent / "ingest" / "connectors" / "contracts"
    for c in sorted(contracts.glob("legacy_*.yaml")):
        doc = yaml.safe_load(c.read_text(encoding="utf-8"))
        for export in doc["exports"] + doc.get("code_maps", []):
            files = day_files(doc["source"], f"{export['file_prefix']}_*.csv")
            if not files:
                continue
            df = (spark.read.option("header", True).option("encoding", doc["encoding"])
                  .option("sep", doc.get("delimiter", ",")).csv(files))
            df = df.toDF(*[f"c{i}" for i in range(len(df.columns))])  # Delta wants plain names
            target = str(out / doc["source"] / export.get("entity", export.get("name")))
            df.write.format("delta").mode("overwrite").save(target)
            rows += spark.read.format("delta").load(target).count()
    fhir = [d.name for d in s.dropzone_root.iterdir() if d.name.startswith("fhir_")] if s.dropzone_root.is_dir() else []
    for source in fhir:
        files = day_files(source, "*.ndjson")
        if files:
            df = spark.read.text(files)
            df.write.format("delta").mode("overwrite").save(str(out / source))
            rows += spark.read.format("delta").load(str(out / source)).count()
    for f in day_files("reference", "*.csv"):
        df = spark.read.option("header", True).csv(f)
        target = str(out / "reference" / Path(f).stem)
        df.write.format("delta").mode("overwrite").save(target)
        rows += spark.read.format("delta").load(target).count()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=20000)
    ap.add_argument("--days", type=int, default=10, help="simulated days; the last one is the increment")
    ap.add_argument("--media", action="store_true", help="also simulate and ingest DICOM / ECG files")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's JL_HOME")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jiceng-bench-ingest-"))
    os.environ.update(JL_HOME=str(home), JL_ENV=os.environ.get("JL_ENV", "CI"))
    from ingest.connectors.sources import SOURCE_KINDS, ingest_sources
    from ingest.simulator.city import CityConfig, simulate_city
    from lakehouse.settings import get_settings
    from lakehouse.spark import get_spark

    s = get_settings()
    t0 = time.monotonic()
    sim = simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root,
                        CityConfig(residents=args.residents, start=START, days=args.days, media_files=args.media))
    print(f"simulated {args.residents:,} residents, {args.days} days → {sum(sim.rows.values()):,} regional rows, "
          f"files {sim.files} in {time.monotonic() - t0:.1f} s")
    kinds = tuple(k for k in SOURCE_KINDS if args.media or k not in ("dicom", "ecg"))
    last_day = START + dt.timedelta(days=args.days - 1)

    spark = get_spark(s, app_name="bench-ingest")
    spark.range(1).write.format("delta").mode("overwrite").save(str(home / "warmup"))  # JVM warm-up

    t0 = time.monotonic()
    plain_rows = _plain_copy(spark, s, last_day, home / "plain")
    plain_s = time.monotonic() - t0

    t0 = time.monotonic()
    full = ingest_sources(spark, s, kinds, until=last_day)
    connector_s = time.monotonic() - t0
    read = sum(r.rows_read for rs in full.values() for r in rs)
    loaded = sum(r.rows_loaded for rs in full.values() for r in rs)
    quarantined = sum(r.rows_quarantined for rs in full.values() for r in rs)

    t0 = time.monotonic()
    inc = ingest_sources(spark, s, kinds)
    incremental_s = time.monotonic() - t0
    inc_read = sum(r.rows_read for rs in inc.values() for r in rs)

    print(f"{'path':<40}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    print(f"{'plain spark.read + write delta':<40}{plain_rows:>12,}{plain_s:>10.1f}{plain_rows / plain_s:>12,.0f}")
    print(f"{'platform connectors (full load)':<40}{read:>12,}{connector_s:>10.1f}{read / connector_s:>12,.0f}")
    print(f"  of which loaded {loaded:,}, quarantined {quarantined:,}")
    print(f"connector / plain throughput ratio: {(read / connector_s) / (plain_rows / plain_s):.2f}")
    print(f"incremental day {last_day} ({inc_read:,} rows read): {incremental_s:.1f} s = "
          f"{incremental_s / connector_s:.0%} of the full load")
    print(f"peak RSS of this process (driver side, Python): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    spark.stop()
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
