"""The source kinds the platform ingests, and one entry point for any set of them.

| kind        | connector                      | delivers                                            |
|-------------|--------------------------------|-----------------------------------------------------|
| reference   | :mod:`.reference`              | GB/T 2260 areas, ICD-10, essential drugs, census     |
| regional    | :mod:`.relational`             | the regional EHR/HIS database (SQLite / PostgreSQL) |
| legacy      | :mod:`.legacy_csv`             | legacy county systems' daily GBK CSV exports        |
| fhir        | :mod:`.fhir`                   | the city hospital's FHIR R4 bulk-export NDJSON      |
| dicom       | :mod:`.media_files`            | imaging exam files (landing copy + file manifest)   |
| ecg         | :mod:`.media_files`            | 12-lead ECG files (DICOM waveform, WFDB)            |
| orthanc     | :mod:`.orthanc`                | the regional PACS's instances (Orthanc changes feed) |

Each connector's ``ingest(spark, settings, *, until=None, full=False)`` loads what was delivered
before ``until`` (the end of a data interval) and not loaded yet.

``SOURCE_KINDS`` are always there (the simulator delivers them); a kind in ``SERVICE_SOURCES`` is a
service the platform connects to, ingested only when its setting is set (``orthanc``:
``JL_ORTHANC_URL``): without it, "all sources" means exactly ``SOURCE_KINDS`` and asking for it
loads nothing.
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
# kind → (module, fixed arguments, the Settings attribute that must be set for it to be ingested)
SERVICE_SOURCES: dict[str, tuple[str, dict, str]] = {
    "orthanc": ("ingest.connectors.orthanc", {}, "orthanc_url"),
}
KNOWN_KINDS: tuple[str, ...] = (*SOURCE_KINDS, *SERVICE_SOURCES)


def configured_kinds(settings) -> tuple[str, ...]:
    """Every source kind to ingest under ``settings``: ``SOURCE_KINDS`` plus the configured services."""
    return (*SOURCE_KINDS, *(k for k, (_, _, attr) in SERVICE_SOURCES.items() if getattr(settings, attr, None)))


def connector(kind: str) -> Callable[..., list[BatchResult]]:
    """The ``ingest`` function of source ``kind`` (with its fixed arguments bound)."""
    if kind not in KNOWN_KINDS:
        raise KeyError(f"unknown source kind {kind!r}; known: {', '.join(KNOWN_KINDS)}")
    module, fixed = SOURCE_KINDS[kind] if kind in SOURCE_KINDS else SERVICE_SOURCES[kind][:2]
    fn = importlib.import_module(module).ingest
    return lambda spark, settings, **kw: fn(spark, settings, **fixed, **kw)


def ingest_sources(spark, settings, kinds: tuple[str, ...] | None = None, *, until=None, full: bool = False,
                   progress: Callable[[str], None] | None = None) -> dict[str, list[BatchResult]]:
    """Ingest ``kinds`` (default: all configured, reference data first) and return their batch results."""
    out = {}
    for kind in kinds or configured_kinds(settings):
        if progress:
            progress(kind)
        out[kind] = connector(kind)(spark, settings, until=until, full=full)
    return out
