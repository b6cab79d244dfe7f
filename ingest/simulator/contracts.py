"""Render the connector contracts that describe what the simulated sources deliver.

``python -m ingest.simulator.contracts`` rewrites ``ingest/connectors/contracts/regional.yaml``
and ``legacy_<county_code>.yaml`` for every county that can be the legacy one (the last
configured county). The unit tests check that the committed files equal the rendering.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from ingest.simulator import geography, legacy_spec, source_schema

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "connectors" / "contracts"

_REGIONAL_HEADER = """\
# Contract of the regional EHR/HIS database (source `regional`), read by ingest/connectors/relational.py.
# Generated from ingest/simulator/source_schema.py by `python -m ingest.simulator.contracts`; a unit test
# checks both agree. Tables are listed parents first. Every table has created_at / updated_at
# (timestamp_format) and the soft-delete flag is_deleted (0/1); date_columns hold yyyy-MM-dd strings,
# timestamp_columns yyyy-MM-dd HH:mm:ss strings. Residents of the legacy county have no rows here
# except death_registrations (reported by civil affairs for the whole city, linked by ID card).
"""

_LEGACY_HEADER = """\
# Contract of the legacy primary-care system of county {code} ({name}), read by
# ingest/connectors/legacy_csv.py. Generated from ingest/simulator/legacy_spec.py by
# `python -m ingest.simulator.contracts`; a unit test checks both agree.
# Files: dropzone/legacy_{code}/<YYYY-MM-DD>/<file_prefix>_<YYYYMMDD>.csv, GBK, header row, one file per
# export per day (header only when nothing changed). The folder of day start-1 holds the full history
# and the code maps; later folders hold the rows created or changed that day (current state of the row).
# `columns` maps legacy header → standard column; the created_at / updated_at / void-flag columns are
# given separately and are not repeated in `columns`. `dates` gives the legacy format of date columns;
# value codes (sex 1/2, followup_type clinic|home|phone, flags 0/1) are already the regional ones.
"""


def _dump(data: dict) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None, width=10_000)


def render_regional() -> str:
    return _REGIONAL_HEADER + _dump(source_schema.contract())


def render_legacy(county_code: str) -> str:
    name = next(n for c, n, _ in geography.COUNTIES if c == county_code)
    return _LEGACY_HEADER.format(code=county_code, name=name) + _dump(legacy_spec.contract(county_code, name))


def rendered() -> dict[Path, str]:
    out = {CONTRACTS_DIR / "regional.yaml": render_regional()}
    for code, _, _ in geography.COUNTIES:
        out[CONTRACTS_DIR / f"legacy_{code}.yaml"] = render_legacy(code)
    return out


def write_all() -> list[Path]:
    CONTRACTS_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text, encoding="utf-8")
    return list(rendered())


if __name__ == "__main__":
    for p in write_all():
        print(p)
