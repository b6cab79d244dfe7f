"""Indicator engine benchmark: a full computation, then one incremental day.

Simulates a city (``--days`` days from 2025-12-22, no DICOM/ECG files), loads every day but the
last through the pipeline (ingest, conform with the EMPI, record flags, quality scorecard), then:

(a) computes every catalogued indicator from scratch (``compute(full=True)``): values, members,
    the run log;
(b) runs the same again incrementally with no new data (every indicator is skipped);
(c) loads the last day (new rows, corrections, deletions) through the same steps and computes
    incrementally: only the indicators whose inputs changed, only the periods their changed
    rows fall in (see docs/indicators.md);
(d) for comparison, a full recomputation at the same versions;
(e) the backfill run of December (``jiceng_indicators`` with that month's data interval): every
    indicator's 2025-12, 2025-Q4 and 2025 recomputed from unchanged data, writing nothing.

It prints the time of each run, the rows written, and which periods the incremental run
recomputed per indicator.

    .venv/bin/python benchmarks/bench_indicators.py --residents 2000

Figures only: nothing here asserts a time. Run (d) also shows whether (c) left the tables as a
computation from scratch would: it then writes no row. ``--keep`` keeps the lake.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

START = dt.date(2025, 12, 22)


def _load(s, until=None) -> float:
    """Ingest (up to ``until``), conform, flag and score: the steps before the engine."""
    from lakehouse import pipeline

    t = time.monotonic()
    pipeline.ingest(s, until=until)
    pipeline.conform(s)
    pipeline.flag_records(s)
    pipeline.score_quality(s)
    return time.monotonic() - t


def _timed(label: str, fn) -> dict:
    t = time.monotonic()
    out = fn()
    seconds = time.monotonic() - t
    tables = out.get("_tables", {})
    written = {name.split(".")[-1]: st["inserted"] + st["updated"] + st["deleted"] for name, st in tables.items()}
    runs = {k: v for k, v in out.items() if not k.startswith("_")}
    skipped = sum(1 for v in runs.values() if v.get("unchanged"))
    print(f"{label:<44} {seconds:8.1f} s   indicators computed {len(runs) - skipped:2d}, skipped {skipped:2d}; "
          f"rows written {written or 0}", flush=True)
    return {"seconds": seconds, "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=2000)
    ap.add_argument("--days", type=int, default=10, help="simulated days; the last one is the increment")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's JL_HOME")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jiceng-bench-indicators-"))
    os.environ.update(JL_HOME=str(home), JL_ENV=os.environ.get("JL_ENV", "CI"))
    from lakehouse import delta, pipeline
    from lakehouse.settings import get_settings
    from lakehouse.spark import get_spark
    from spark_jobs.indicators.engine import MEMBERS, VALUES, compute, interval_periods, period_interval

    s = get_settings()
    try:
        t = time.monotonic()
        pipeline.simulate(s, residents=args.residents, start=START.isoformat(), days=args.days, media_files=False)
        print(f"simulated {args.residents:,} residents, {args.days} days in {time.monotonic() - t:.0f} s", flush=True)
        last_day = START + dt.timedelta(days=args.days - 1)
        print(f"loaded the days before {last_day} (ingest, conform, flags, scorecard) in {_load(s, last_day):.0f} s",
              flush=True)
        spark = get_spark(s)
        full = _timed("(a) full computation", lambda: compute(spark, s.lake_root, full=True))
        members = delta.read(spark, MEMBERS, s.lake_root).count()
        values = delta.read(spark, VALUES, s.lake_root).count()
        print(f"    {values:,} values from {members:,} member rows", flush=True)
        _timed("(b) incremental, nothing new", lambda: compute(spark, s.lake_root))
        print(f"loaded {last_day} in {_load(s):.0f} s", flush=True)
        inc = _timed(f"(c) incremental day {last_day}", lambda: compute(spark, s.lake_root))
        for ind, r in inc["out"].items():
            if not ind.startswith("_") and not r.get("unchanged"):
                periods = r.get("periods")
                print(f"    {ind:<36} {'every period' if periods is None else ', '.join(periods) or 'none'}")
        again = _timed("(d) full recomputation, same versions", lambda: compute(spark, s.lake_root, full=True))
        print(f"incremental day = {inc['seconds'] / again['seconds']:.0%} of a full computation "
              f"({full['seconds']:.0f} s before the day)")
        december = interval_periods(*period_interval("2025-12"))
        _timed("(e) backfill of 2025-12, nothing new", lambda: compute(spark, s.lake_root, recompute=december))
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
