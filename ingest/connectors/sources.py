"""The source kinds the platform ingests, and one entry point for any set of them.

| kind        | connector                      | delivers                                            |
|-------------|--------------------------------|-----------------------------------------------------|
| reference   | :mod:`.reference`              | GB/T 2260 areas, ICD-10, essential drugs, census     |
| regional    | :mod:`.relational`             | the regional EHR/HIS database (SQLite / PostgreSQL) |
| legacy      | :mod:`.legacy_csv`             | legacy county systems' daily GBK CSV exports        |
| fhir        | :mod:`.fhir`                   | the city hospital's FHIR R4 bulk-export NDJSON      |
| dicom       | :mod:`.media_files`            | imaging exam files (landing copy + file manifest)   |
| ecg         | :mod:`.media_files`            | 12-lead ECG files (DICOM waveform, WFDB)            |

Each connector's ``ingest(spark, settings, *, until=None, full=False)`` loads what was delivered
before ``until`` (the end of a data interval) and not loaded yet.
"""
from __future__ import annotations

import importlib
from typing import Callable

from ingest.connectors.common import BatchResult

SOURCE_KINDS: dict[str, tuple[str, dict]] = {
    "reference": ("ingest.connectors.reference", {}),
    "regional": ("ingest.connectors.relational", {}),
    "legacy": ("ingest.connectors.legacy_csv", {}),
    "fhir": ("ingest.connectors.fhir", {}),
    "dicom": ("ingest.connectors.media_files", {"kind": "dicom"}),
    "ecg": ("ingest.connectors.media_files", {"kind": "ecg"}),
}


def connector(kind: str) -> Callable[..., list[BatchResult]]:
    """The ``ingest`` function of source ``kind`` (with its fixed arguments bound)."""
    if kind not in SOURCE_KINDS:
        raise KeyError(f"unknown source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}")
    module, fixed = SOURCE_KINDS[kind]
    fn = importlib.import_module(module).ingest
    return lambda spark, settings, **kw: fn(spark, settings, **fixed, **kw)


def ingest_sources(spark, settings, kinds: tuple[str, ...] | None = None, *, until=None, full: bool = False,
                   progress: Callable[[str], None] | None = None) -> dict[str, list[BatchResult]]:
    """Ingest ``kinds`` (default: all, reference data first) and return their batch results."""
    out = {}
    for kind in kinds or tuple(SOURCE_KINDS):
        if progress:
            progress(kind)
        out[kind] = connector(kind)(spark, settings, until=until, full=full)
    return out
