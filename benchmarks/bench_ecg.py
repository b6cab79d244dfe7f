"""ECG benchmark: the Spark pipeline against a plain single-process loop over the same recordings.

Writes ``--synthetic`` distinct 10-s 12-lead ECGs with the simulator (every rhythm, DICOM and WFDB
alternating; ``--copies`` hard links of each make the set larger without more synthesis), adds
every real record under ``--real`` (the shared WFDB records), then, in one run and on the same
list of files:

(a) the Spark pipeline's own function (:func:`spark_jobs.ecg.job.analyse_recordings`:
    ``mapInPandas``, one recording per row, over the cluster's cores) with the results written to
    a Delta table, as the pipeline writes them;
(b) a plain Python loop calling the same per-recording function
    (:func:`spark_jobs.ecg.job.process_one`: read, then ``analyse``) one file after another;

and prints recordings/s of each, their ratio, and peak memory: the loop's own RSS, and for Spark
the driver JVM's and the largest Python worker's RSS sampled while it runs. The Spark run is done
at half and at the full set (half the synthetic recordings + every real one, then all), so the
memory figures show whether they grow with the number of recordings.

    .venv/bin/python benchmarks/bench_ecg.py --synthetic 250 --copies 8

Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

RHYTHMS = {"sinus": (60, 95), "brady": (40, 55), "tachy": (105, 150), "afib": (70, 130), "pvc": (60, 95),
           "pause": (45, 70)}


def write_synthetic(folder: Path, n: int, copies: int) -> list[str]:
    import random

    from ingest.simulator import media

    rnd = random.Random(7)
    patient = media.PatientIdentity("P0", "基准", "110101199003071234", "1", dt.date(1960, 1, 1))
    paths = []
    for i in range(n):
        rhythm = list(RHYTHMS)[i % len(RHYTHMS)]
        exam = media.EcgExam(f"B{i:06d}", "H1", "卫生院", dt.datetime(2025, 12, 22, 9, 0), rhythm,
                             rnd.randint(*RHYTHMS[rhythm]), round(rnd.uniform(0.01, 0.08), 3),
                             media.ECG_FORMATS[i % 2])
        first = Path(media.write_ecg(folder / "orig", patient, exam, seed=i)[0])
        for c in range(copies):
            copy_dir = folder / f"copy{c}"
            copy_dir.mkdir(exist_ok=True)
            for f in first.parent.glob(f"{first.stem}.*"):
                os.link(f, copy_dir / f.name) if not (copy_dir / f.name).exists() else None
            paths.append(str(copy_dir / first.name))
    return paths


def real_records(root: Path) -> list[str]:
    return sorted(str(h) for h in root.rglob("*.hea")) if root.is_dir() else []


class RssSampler:
    """Peak RSS (MB) of the JVM and of the largest Python worker, sampled every 0.2 s."""

    def __init__(self):
        self.jvm = self.worker = 0.0
        self._stop = threading.Event()

    def _sample(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for p in me.children(recursive=True):
                try:
                    rss = p.memory_info().rss / 2**20
                    cmd = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                if "java" in cmd:
                    self.jvm = max(self.jvm, rss)
                elif "pyspark" in cmd or "daemon" in cmd or "worker" in cmd:
                    self.worker = max(self.worker, rss)
            time.sleep(0.2)

    def __enter__(self):
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_spark(spark, paths: list[str], out: Path) -> tuple[float, RssSampler]:
    from spark_jobs.ecg.job import analyse_recordings

    todo = spark.createDataFrame([(f"r{i}", p) for i, p in enumerate(paths)], "recording_id STRING, path STRING")
    with RssSampler() as rss:
        t0 = time.monotonic()
        analyse_recordings(spark, todo, len(paths)).write.format("delta").mode("overwrite").save(str(out))
        elapsed = time.monotonic() - t0
    n = spark.read.format("delta").load(str(out)).count()
    assert n == len(paths), (n, len(paths))
    return elapsed, rss


def run_loop(paths: list[str]) -> float:
    from spark_jobs.ecg.job import process_one

    t0 = time.monotonic()
    for i, p in enumerate(paths):
        process_one(f"r{i}", p)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", type=int, default=250, help="distinct synthetic recordings")
    ap.add_argument("--copies", type=int, default=8, help="hard-linked copies of each (the set is synthetic x copies)")
    ap.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "ecg")
    args = ap.parse_args()

    os.environ.setdefault("JL_ENV", "CI")
    work = Path(tempfile.mkdtemp(prefix="bench_ecg_"))
    os.environ.setdefault("JL_HOME", str(work / "home"))
    t0 = time.monotonic()
    synthetic = write_synthetic(work / "ecg", args.synthetic, args.copies)
    paths = synthetic + real_records(args.real)
    print(f"{len(paths)} recordings ({args.synthetic} synthetic x {args.copies} copies + "
          f"{len(real_records(args.real))} real) written in {time.monotonic() - t0:.0f} s")

    from lakehouse.settings import load_settings
    from lakehouse.spark import get_spark

    spark = get_spark(load_settings())
    # warm-up: start the Python workers and import neurokit2 in them, as a running pipeline has
    run_spark(spark, paths[:4], work / "warm")
    from spark_jobs.ecg.job import process_one

    process_one("warm", paths[0])

    # both runs hold the real records (four 30-min Holters among them, the largest signals), so a
    # difference in peak memory comes from the number of recordings, not from which ones
    half = synthetic[: len(synthetic) // 2] + real_records(args.real)
    t_half, rss_half = run_spark(spark, half, work / "half")
    t_spark, rss = run_spark(spark, paths, work / "full")
    t_loop = run_loop(paths)
    loop_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"spark (mapInPandas, {spark.sparkContext.defaultParallelism} cores): {len(paths)} recordings in "
          f"{t_spark:.1f} s = {len(paths) / t_spark:.2f} recordings/s")
    print(f"plain loop (one process):                {len(paths)} recordings in "
          f"{t_loop:.1f} s = {len(paths) / t_loop:.2f} recordings/s")
    print(f"ratio spark / loop: {t_loop / t_spark:.2f}x")
    print(f"peak RSS, spark at {len(half)} recordings: JVM {rss_half.jvm:.0f} MB, largest Python worker "
          f"{rss_half.worker:.0f} MB; at {len(paths)}: JVM {rss.jvm:.0f} MB, worker {rss.worker:.0f} MB")
    print(f"peak RSS of this process (driver + the loop): {loop_rss:.0f} MB")


if __name__ == "__main__":
    main()
