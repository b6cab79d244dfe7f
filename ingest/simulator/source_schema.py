"""Schema of the standardised regional EHR/HIS database (the relational source system).

Defined once with SQLAlchemy Core so the same tables are created in SQLite (default) or
PostgreSQL. Every table has ``created_at`` / ``updated_at`` ('YYYY-MM-DD HH:MM:SS', China time)
and a soft-delete flag ``is_deleted``, as the regional system's specification requires; the
relational connector reads them incrementally by ``updated_at``.
"""
from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()


def _audit_columns():
    return [
        Column("created_at", String(19), nullable=False),
        Column("updated_at", String(19), nullable=False, index=True),
        Column("is_deleted", Integer, nullable=False, default=0),
    ]


org_units = Table(
    "org_units", metadata,
    Column("org_code", String(32), primary_key=True),
    Column("org_name", String(100), nullable=False),
    Column("org_type", String(32), nullable=False),
    Column("level", String(16), nullable=False),
    Column("parent_code", String(32)),
    Column("area_code", String(12), nullable=False),
    *_audit_columns(),
)

residents = Table(
    "residents", metadata,
    Column("resident_id", String(32), primary_key=True),
    Column("id_card_no", String(18)),
    Column("name", String(50)),
    Column("sex", String(1)),            # GB/T 2261.1: 1 male, 2 female
    Column("birth_date", String(10)),
    Column("phone", String(20)),
    Column("address", String(200)),
    Column("area_code", String(12)),     # township code of residence
    *_audit_columns(),
)

health_archives = Table(
    "health_archives", metadata,
    Column("archive_no", String(17), primary_key=True),
    Column("resident_id", String(32), nullable=False),
    Column("org_code", String(32), nullable=False),
    Column("created_date", String(10), nullable=False),
    *_audit_columns(),
)

hypertension_registry = Table(
    "hypertension_registry", metadata,
    Column("registry_id", String(32), primary_key=True),
    Column("resident_id", String(32), nullable=False),
    Column("org_code", String(32), nullable=False),
    Column("doctor_id", String(32)),
    Column("diagnosed_date", String(10)),
    Column("registered_date", String(10), nullable=False),
    *_audit_columns(),
)

hypertension_followups = Table(
    "hypertension_followups", metadata,
    Column("followup_id", String(32), primary_key=True),
    Column("registry_id", String(32), nullable=False),
    Column("resident_id", String(32), nullable=False),
    Column("org_code", String(32), nullable=False),
    Column("doctor_id", String(32)),
    Column("followup_date", String(10), nullable=False),
    Column("followup_type", String(8), nullable=False),  # clinic | home | phone
    Column("sbp_mmhg", Integer),
    Column("dbp_mmhg", Integer),
    *_audit_columns(),
)
