"""Delivered files: the drop zone, the immutable landing copy and the file manifest.

Sources that deliver files (the legacy county's CSV exports, the hospital's FHIR bulk export,
DICOM and ECG files, reference tables) drop them under::

    <JL_HOME>/dropzone/<source>/<YYYY-MM-DD>/<any path>     (the delivery day's folder)

A connector asks :func:`pending_files` for the files of delivery days before ``until`` that are not
loaded yet (by source, relative path and SHA-256, so a re-delivered file with new content is loaded
again and an unchanged one never is), copies each into the landing zone with :func:`land`
(``<JL_HOME>/landing/<source>/<same relative path>``, written to a temporary name and renamed, never
overwritten), loads it, and records it in ``ops.landed_files`` with :func:`record_files` after its
rows are committed. Undated snapshots (files directly under ``<source>/``, or in its
``reference`` folder) count as delivered on day 0000-00-00: always due. Other folders are ignored.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lakehouse import delta
from lakehouse.tables import LANDED_FILES

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UNDATED = "0000-00-00"
UNDATED_FOLDERS = {"reference": UNDATED}


@dataclass(frozen=True)
class DeliveredFile:
    source: str
    delivery_day: str      # YYYY-MM-DD of the folder it was dropped in
    rel_path: str          # relative to dropzone/<source>, with forward slashes
    path: Path
    sha256: str
    size_bytes: int


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def delivered_files(dropzone_root: Path, source: str, until: dt.date | str | None = None,
                    suffixes: tuple[str, ...] | None = None) -> list[DeliveredFile]:
    """Every file dropped for ``source`` in a delivery day before ``until`` (exclusive), in day
    then path order; only names ending in one of ``suffixes`` when given."""
    base = Path(dropzone_root) / source
    if not base.is_dir():
        return []
    until_s = str(until)[:10] if until is not None else None
    groups = [(UNDATED, sorted(p for p in base.iterdir() if p.is_file()))]
    for day_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if not _DAY.match(day_dir.name) and day_dir.name not in UNDATED_FOLDERS:
            continue
        day = UNDATED_FOLDERS.get(day_dir.name, day_dir.name)
        if until_s is not None and day >= until_s:
            continue
        groups.append((day, sorted(p for p in day_dir.rglob("*") if p.is_file())))
    out = []
    for day, files in groups:
        for f in files:
            if f.name.startswith(".") or (suffixes and not f.name.lower().endswith(suffixes)):
                continue
            out.append(DeliveredFile(source, day, f.relative_to(base).as_posix(), f,
                                     sha256_of(f), f.stat().st_size))
    return out


def loaded_keys(spark, lake_root: str, source: str) -> set[tuple[str, str]]:
    """(rel_path, sha256) of the files of ``source`` already recorded in ``ops.landed_files``."""
    path = LANDED_FILES.path(lake_root)
    if not delta.table_exists(spark, path):
        return set()
    rows = spark.read.format("delta").load(path).where(f"source = '{source}'").select("rel_path", "sha256").collect()
    return {(r.rel_path, r.sha256) for r in rows}


def pending_files(spark, lake_root: str, dropzone_root: Path, source: str, until=None,
                  suffixes: tuple[str, ...] | None = None) -> list[DeliveredFile]:
    """The delivered files of ``source`` not loaded yet (see :func:`delivered_files`)."""
    done = loaded_keys(spark, lake_root, source)
    return [f for f in delivered_files(dropzone_root, source, until, suffixes)
            if (f.rel_path, f.sha256) not in done]


def land(f: DeliveredFile, landing_root: Path) -> Path:
    """Copy ``f`` into the immutable landing zone and return the copy's path. An existing copy
    with the same content is reused; a different one is never overwritten (the new content gets
    its hash in the name)."""
    target = Path(landing_root) / f.source / f.rel_path
    if target.exists():
        if sha256_of(target) == f.sha256:
            return target
        target = target.with_name(f"{target.stem}.{f.sha256[:12]}{target.suffix}")
        if target.exists():
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(f.path, tmp)
    os.replace(tmp, target)
    return target


def record_files(spark, lake_root: str, rows: list[dict]) -> None:
    """Record loaded files (dicts with the ``ops.landed_files`` columns); call after their rows
    are committed, so a crash before it makes the rerun load the file again (a no-op MERGE)."""
    if not rows:
        return
    df = spark.createDataFrame([{c: r.get(c) for c in LANDED_FILES.columns} for r in rows], LANDED_FILES.schema)
    delta.upsert(spark, delta.with_row_hash(df.dropDuplicates(list(LANDED_FILES.keys)), exclude=()),
                 LANDED_FILES, lake_root)
