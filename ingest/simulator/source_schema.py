"""Schema of the standardised regional EHR/HIS database (the relational source system).

Defined once with SQLAlchemy Core so the same tables are created in SQLite (default) or
PostgreSQL. Every table has ``created_at`` / ``updated_at`` ('YYYY-MM-DD HH:MM:SS', China time)
and a soft-delete flag ``is_deleted``, as the regional system's specification requires; the
relational connector reads them incrementally by ``updated_at``.

Column ``info["kind"]`` marks what the connector contract (``contracts/regional.yaml``) must
name: ``date`` (a 'YYYY-MM-DD' string), ``timestamp`` ('YYYY-MM-DD HH:MM:SS') and ``id_card``.
A unit test checks that the contract and this module agree.
"""
from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table

metadata = MetaData()


def _audit_columns():
    return [
        Column("created_at", String(19), nullable=False),
        Column("updated_at", String(19), nullable=False, index=True),
        Column("is_deleted", Integer, nullable=False, default=0),
    ]


def _date(name: str, nullable: bool = True) -> Column:
    return Column(name, String(10), nullable=nullable, info={"kind": "date"})


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, String(19), nullable=nullable, info={"kind": "timestamp"})


def _id_card(name: str = "id_card_no") -> Column:
    return Column(name, String(18), info={"kind": "id_card"})


def _code(name: str, nullable: bool = True, length: int = 32) -> Column:
    return Column(name, String(length), nullable=nullable)


def _flag(name: str) -> Column:
    return Column(name, Integer, nullable=False, default=0)


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

family_doctor_teams = Table(
    "family_doctor_teams", metadata,
    Column("team_id", String(32), primary_key=True),
    _code("org_code", nullable=False),
    Column("team_name", String(100), nullable=False),
    _code("leader_staff_id"),
    _date("established_date"),
    *_audit_columns(),
)

staff = Table(
    "staff", metadata,
    Column("staff_id", String(32), primary_key=True),
    Column("name", String(50), nullable=False),
    Column("sex", String(1)),
    _code("org_code", nullable=False),
    Column("role", String(16), nullable=False),       # doctor | nurse | public_health
    Column("title_zh", String(32)),                    # 执业医师 / 执业助理医师 / 乡村医生 / 护士 / 公卫医师
    _code("team_id"),
    _date("hired_date"),
    *_audit_columns(),
)

residents = Table(
    "residents", metadata,
    Column("resident_id", String(32), primary_key=True),
    _id_card(),
    Column("name", String(50)),
    Column("sex", String(1)),            # GB/T 2261.1: 1 male, 2 female
    _date("birth_date"),
    Column("phone", String(20)),
    Column("address", String(200)),
    Column("area_code", String(12)),     # township code of residence
    _code("org_code"),                   # the institution that registered the resident
    *_audit_columns(),
)

health_archives = Table(
    "health_archives", metadata,
    Column("archive_no", String(17), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _date("created_date", nullable=False),
    _code("doctor_id"),
    *_audit_columns(),
)

death_registrations = Table(   # reported by civil affairs (民政), linked to residents by ID card
    "death_registrations", metadata,
    Column("death_id", String(32), primary_key=True),
    _id_card(),
    Column("name", String(50)),
    Column("sex", String(1)),
    _date("birth_date"),
    _date("death_date", nullable=False),
    Column("cause_icd10", String(8)),
    Column("death_place", String(16)),    # hospital | home | other
    Column("area_code", String(12)),      # township of residence
    _code("reported_by"),                 # civil affairs office code
    _date("reported_date"),
    *_audit_columns(),
)

family_doctor_contracts = Table(
    "family_doctor_contracts", metadata,
    Column("contract_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("team_id"),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("signed_date", nullable=False),
    _date("start_date"),
    _date("end_date"),
    _flag("is_elderly"), _flag("is_hypertension"), _flag("is_diabetes"), _flag("is_child"),
    _flag("is_pregnant"), _flag("is_disabled"), _flag("is_poverty"),
    Column("fee_yuan", Float),
    *_audit_columns(),
)


def _registry(name: str) -> Table:
    return Table(
        name, metadata,
        Column("registry_id", String(32), primary_key=True),
        _code("resident_id", nullable=False),
        _code("org_code", nullable=False),
        _code("doctor_id"),
        _date("diagnosed_date"),
        _date("registered_date", nullable=False),
        *_audit_columns(),
    )


hypertension_registry = _registry("hypertension_registry")
diabetes_registry = _registry("diabetes_registry")

hypertension_followups = Table(
    "hypertension_followups", metadata,
    Column("followup_id", String(32), primary_key=True),
    _code("registry_id", nullable=False),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("followup_date", nullable=False),
    Column("followup_type", String(8), nullable=False),  # clinic | home | phone
    Column("sbp_mmhg", Integer),
    Column("dbp_mmhg", Integer),
    Column("heart_rate_bpm", Integer),
    Column("weight_kg", Float),
    Column("medication_adherence", String(16)),   # regular | intermittent | none
    Column("classification", String(8)),          # 控制满意 | 控制不满意 | 不良反应 | 并发症
    _date("next_followup_date"),
    *_audit_columns(),
)

diabetes_followups = Table(
    "diabetes_followups", metadata,
    Column("followup_id", String(32), primary_key=True),
    _code("registry_id", nullable=False),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("followup_date", nullable=False),
    Column("followup_type", String(8), nullable=False),  # clinic | home | phone
    Column("fasting_glucose_mmol", Float),
    Column("sbp_mmhg", Integer),
    Column("dbp_mmhg", Integer),
    Column("weight_kg", Float),
    Column("medication_adherence", String(16)),
    Column("classification", String(8)),
    _date("next_followup_date"),
    *_audit_columns(),
)

elderly_checkups = Table(   # annual health check-up of residents aged 65+
    "elderly_checkups", metadata,
    Column("checkup_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("checkup_date", nullable=False),
    Column("height_cm", Float),
    Column("weight_kg", Float),
    Column("sbp_mmhg", Integer),
    Column("dbp_mmhg", Integer),
    Column("fasting_glucose_mmol", Float),
    _flag("has_ecg"),
    _flag("has_ultrasound"),
    Column("conclusion", String(16)),             # 正常 | 异常
    *_audit_columns(),
)

child_health_checks = Table(   # children 0–6
    "child_health_checks", metadata,
    Column("check_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("check_date", nullable=False),
    Column("age_months", Integer),
    Column("height_cm", Float),
    Column("weight_kg", Float),
    Column("hemoglobin_g_l", Integer),
    Column("development", String(8)),             # normal | suspect
    *_audit_columns(),
)

pregnancy_registrations = Table(
    "pregnancy_registrations", metadata,
    Column("pregnancy_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("registered_date", nullable=False),
    _date("last_menstrual_date"),
    Column("gestational_weeks", Integer),         # at registration
    _date("expected_delivery_date"),
    *_audit_columns(),
)

prenatal_visits = Table(
    "prenatal_visits", metadata,
    Column("visit_id", String(32), primary_key=True),
    _code("pregnancy_id", nullable=False),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("visit_date", nullable=False),
    Column("gestational_weeks", Integer),
    Column("sbp_mmhg", Integer),
    Column("dbp_mmhg", Integer),
    Column("weight_kg", Float),
    Column("hemoglobin_g_l", Integer),
    *_audit_columns(),
)

postpartum_visits = Table(
    "postpartum_visits", metadata,
    Column("visit_id", String(32), primary_key=True),
    _code("pregnancy_id", nullable=False),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("delivery_date"),
    _date("visit_date", nullable=False),
    Column("delivery_outcome", String(16)),       # live_birth | stillbirth
    *_audit_columns(),
)

immunizations = Table(
    "immunizations", metadata,
    Column("immunization_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("staff_id"),
    Column("vaccine_code", String(16), nullable=False),
    Column("vaccine_name", String(50)),
    Column("dose_no", Integer, nullable=False),
    _date("vaccinated_date", nullable=False),
    Column("lot_no", String(20)),
    *_audit_columns(),
)

outpatient_visits = Table(
    "outpatient_visits", metadata,
    Column("visit_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("visit_date", nullable=False),
    Column("diagnosis_code", String(8)),          # ICD-10
    Column("diagnosis_name", String(100)),
    Column("fee_yuan", Float),
    *_audit_columns(),
)

prescriptions = Table(   # one row per prescribed drug
    "prescriptions", metadata,
    Column("prescription_id", String(32), primary_key=True),
    _code("visit_id", nullable=False),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("prescribed_date", nullable=False),
    Column("drug_code", String(16), nullable=False),
    Column("drug_name", String(100)),
    _flag("is_essential_drug"),
    _flag("is_antibiotic"),
    _flag("is_iv_infusion"),
    Column("quantity", Integer),
    Column("amount_yuan", Float),
    *_audit_columns(),
)

inpatient_stays = Table(
    "inpatient_stays", metadata,
    Column("stay_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _date("admission_date", nullable=False),
    _date("discharge_date"),
    Column("diagnosis_code", String(8)),
    Column("diagnosis_name", String(100)),
    Column("total_cost_yuan", Float),
    *_audit_columns(),
)

referrals = Table(   # two-way referral: up (primary care → hospital) or down (hospital → primary care)
    "referrals", metadata,
    Column("referral_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    Column("direction", String(4), nullable=False),   # up | down
    _code("from_org_code", nullable=False),
    _code("to_org_code", nullable=False),
    _code("doctor_id"),
    _date("referral_date", nullable=False),
    Column("reason_code", String(8)),             # ICD-10
    *_audit_columns(),
)

ecg_requests = Table(   # remote ECG: recorded at primary care, read at a county/city hospital
    "ecg_requests", metadata,
    Column("request_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _code("reading_org_code", nullable=False),
    _ts("requested_at", nullable=False),
    _ts("recorded_at"),                            # recording received by the reading centre
    Column("file_format", String(8)),             # dicom | wfdb
    *_audit_columns(),
)

ecg_reports = Table(
    "ecg_reports", metadata,
    Column("report_id", String(32), primary_key=True),
    _code("request_id", nullable=False),
    _code("reading_org_code", nullable=False),
    _code("reader_id"),
    _ts("reported_at", nullable=False),
    Column("rhythm", String(8)),                  # sinus brady tachy afib pvc pause
    Column("heart_rate_bpm", Integer),
    Column("conclusion", String(100)),
    *_audit_columns(),
)

imaging_requests = Table(
    "imaging_requests", metadata,
    Column("request_id", String(32), primary_key=True),
    _code("resident_id", nullable=False),
    _code("org_code", nullable=False),
    _code("doctor_id"),
    _code("reading_org_code", nullable=False),
    Column("accession_no", String(32), nullable=False),
    Column("modality", String(4), nullable=False),     # DX CR CT US MR
    Column("body_part", String(16)),
    _ts("requested_at", nullable=False),
    _ts("images_received_at"),
    *_audit_columns(),
)

imaging_reports = Table(
    "imaging_reports", metadata,
    Column("report_id", String(32), primary_key=True),
    _code("request_id", nullable=False),
    _code("reading_org_code", nullable=False),
    _code("reader_id"),
    _ts("reported_at", nullable=False),
    Column("findings", String(200)),
    Column("impression", String(100)),
    *_audit_columns(),
)


def key_of(table: Table) -> str:
    (col,) = table.primary_key.columns
    return str(col.name)


def columns_of_kind(table: Table, kind: str) -> list[str]:
    return [str(c.name) for c in table.columns if c.info.get("kind") == kind]


# parents first (the order the connector loads them)
TABLES: tuple[Table, ...] = (
    org_units, family_doctor_teams, staff, residents, health_archives, death_registrations,
    family_doctor_contracts, hypertension_registry, hypertension_followups, diabetes_registry,
    diabetes_followups, elderly_checkups, child_health_checks, pregnancy_registrations,
    prenatal_visits, postpartum_visits, immunizations, outpatient_visits, prescriptions,
    inpatient_stays, referrals, ecg_requests, ecg_reports, imaging_requests, imaging_reports,
)
assert {t.name for t in TABLES} == set(metadata.tables)


def contract() -> dict:
    """The regional source contract as a dict (what ``contracts/regional.yaml`` holds)."""
    tables = []
    for t in TABLES:
        entry: dict = {"name": str(t.name), "key": key_of(t)}
        if dates := columns_of_kind(t, "date"):
            entry["date_columns"] = dates
        if stamps := columns_of_kind(t, "timestamp"):
            entry["timestamp_columns"] = stamps
        if ids := columns_of_kind(t, "id_card"):
            entry["id_card_column"] = ids[0]
        tables.append(entry)
    return {"source": "regional", "updated_at": "updated_at", "created_at": "created_at",
            "deleted_flag": "is_deleted", "timestamp_format": "yyyy-MM-dd HH:mm:ss",
            "date_format": "yyyy-MM-dd", "tables": tables}
