"""Imaging benchmark: header parsing on Spark against a plain single-process pydicom loop.

Writes ``--studies`` synthetic imaging exams with the simulator (DX, CR, CT, US, MR in turn; a CT
or MR study is a series of slices), adds every real file under ``--real`` (the shared DICOM
files, the problematic ones included), and makes ``--copies`` hard-linked copies of the lot, so
the set is large without more synthesis. Then, in one run and on the same list of files:

(a) the pipeline's own parsing (:func:`spark_jobs.imaging.job.parse_files`: ``mapInPandas`` over
    the cluster's cores, :func:`spark_jobs.imaging.parse.parse_file` per file), its work list read
    from a Delta table of landed files as the job reads bronze, the catalogue rows written to a
    Delta table created as ``silver.imaging_files`` is;
(b) a plain loop of ``pydicom.dcmread(path, force=True, defer_size=1024, specific_tags=...)``, one
    file after another, with the options the pipeline reads headers with: forced, values over
    1 KiB located but not read, only the catalogue's attributes (:func:`parse.scan_tags`);

and prints files/s of each and their ratio. For reference it also times (c) a loop of the
pipeline's ``parse_file`` in one process: the same work as (a) without Spark. (a) over (c) is what
the two cores and Spark's own costs give; (c) over (b) is what the pipeline's reader saves by not
building a pydicom ``Dataset`` (see :mod:`spark_jobs.imaging.parse`).

    .venv/bin/python benchmarks/bench_imaging.py --studies 400 --copies 30

Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
import warnings
from pathlib import Path


def write_files(folder: Path, studies: int, real: Path, copies: int) -> list[str]:
    from ingest.simulator import media

    patient = media.PatientIdentity("P0", "基准", "110101199003071234", "1", dt.date(1960, 1, 1))
    originals: list[Path] = []
    for i in range(studies):
        modality = media.MODALITIES[i % len(media.MODALITIES)]
        exam = media.ImagingExam(f"A{i:06d}", f"R{i:06d}", "H1", "卫生院", modality,
                                 {"CT": "CHEST", "MR": "HEAD", "US": "ABDOMEN"}.get(modality, "CHEST"),
                                 dt.datetime(2025, 12, 22, 9, 0))
        originals += media.write_imaging_exam(folder / "orig", patient, exam, seed=i)
    originals += sorted(real.rglob("*.dcm")) if real.is_dir() else []
    paths = []
    for c in range(copies):
        for n, src in enumerate(originals):
            dst = folder / f"copy{c}" / f"{n:06d}.dcm"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
            paths.append(str(dst))
    return paths


def run_spark(spark, paths: list[str], out: Path) -> float:
    """The pipeline's parsing of ``paths``, read as the job reads its work list: from a Delta table
    of landed files (bronze), not from a list in the driver."""
    from spark_jobs.imaging.job import FILES, parse_files

    listing = str(out) + "_todo"
    spark.createDataFrame([(f"f{i}", p) for i, p in enumerate(paths)], "file_id STRING, path STRING") \
        .write.format("delta").mode("overwrite").save(listing)
    todo = spark.read.format("delta").load(listing)
    t0 = time.monotonic()
    parsed = parse_files(spark, todo, len(paths))
    stats = [c for c in FILES.stats_columns if c in parsed.columns]   # as silver.imaging_files is created
    parsed.write.format("delta").option("delta.dataSkippingStatsColumns", ",".join(stats)).save(str(out))
    elapsed = time.monotonic() - t0
    n = spark.read.format("delta").load(str(out)).count()
    assert n == len(paths), (n, len(paths))
    return elapsed


def run_dcmread(paths: list[str]) -> float:
    import pydicom

    from spark_jobs.imaging.parse import DEFER, scan_tags

    tags = scan_tags()
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in paths:
            try:
                pydicom.dcmread(p, force=True, defer_size=DEFER, specific_tags=tags)
            except Exception:  # noqa: BLE001 - the problematic files fail here as they would in any loop
                pass
    return time.monotonic() - t0


def run_parse_loop(paths: list[str]) -> float:
    from spark_jobs.imaging.parse import parse_file

    t0 = time.monotonic()
    for p in paths:
        parse_file(p)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=400, help="synthetic imaging exams")
    ap.add_argument("--copies", type=int, default=30, help="hard-linked copies of every file")
    ap.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom")
    args = ap.parse_args()

    os.environ.setdefault("JL_ENV", "CI")
    work = Path(tempfile.mkdtemp(prefix="bench_imaging_"))
    os.environ.setdefault("JL_HOME", str(work / "home"))
    t0 = time.monotonic()
    paths = write_files(work / "dicom", args.studies, args.real, args.copies)
    size = sum(os.path.getsize(p) for p in paths[: len(paths) // args.copies]) * args.copies
    print(f"{len(paths)} files ({args.studies} synthetic studies + the real files, x {args.copies} copies; "
          f"{size / 2**20:.0f} MB) written in {time.monotonic() - t0:.0f} s")

    from lakehouse.settings import load_settings
    from lakehouse.spark import get_spark

    spark = get_spark(load_settings())
    run_spark(spark, paths[:64], work / "warm")   # start the Python workers, as a running pipeline has
    run_dcmread(paths[:64])
    for p in paths:   # every file in the page cache (as just landed) before either run: neither pays first access
        with open(p, "rb") as f:
            f.read()

    t_spark = run_spark(spark, paths, work / "full")
    t_loop = run_dcmread(paths)
    t_parse = run_parse_loop(paths)
    n = len(paths)
    print(f"spark (mapInPandas, {spark.sparkContext.defaultParallelism} cores, parse_file, written to Delta): "
          f"{n} files in {t_spark:.1f} s = {n / t_spark:.0f} files/s")
    print(f"plain loop, pydicom.dcmread(force=True, defer_size=1024, specific_tags=catalogue): {n} files in {t_loop:.1f} s = "
          f"{n / t_loop:.0f} files/s")
    print(f"ratio spark / plain loop: {t_loop / t_spark:.2f}x")
    print(f"(reference) loop of the pipeline's parse_file, one process: {n} files in {t_parse:.1f} s = "
          f"{n / t_parse:.0f} files/s; spark / this loop: {t_parse / t_spark:.2f}x")


if __name__ == "__main__":
    main()
