"""The silver entities: one table per entity, from every source that has it.

The regional database and the legacy county systems deliver the same entities under the same
standard column names (a legacy contract maps its own headers to them), so an entity's silver
table is the union of ``bronze.regional__<entity>`` and every ``bronze.legacy_<county>__<entity>``;
the city hospital's FHIR export adds outpatient visits, inpatient stays and prescriptions
(:mod:`spark_jobs.conform.fhir`). Every silver row has:

- ``source`` (the system it came from) and the entity's key, unique across sources (the legacy
  systems' identifiers carry their county code);
- ``person_id`` from the EMPI instead of the source's resident id (a row whose resident is not in
  bronze goes to ``quarantine.<entity>`` as ``unresolved_person``);
- ``org_code`` with its ``township_org_code`` and ``county_org_code`` from ``silver.org_units``;
- every column typed (:data:`TYPES`): a value that does not parse becomes NULL (bronze already
  quarantined impossible dates, so NULL here means absent);
- ``source_created_at`` / ``source_updated_at``: when the source system recorded and last changed
  the row (what timeliness and correction checks compare with the event's own day);
- code columns in national codes: the legacy county's local diagnosis codes mapped through its
  delivered map (``<column>_icd10``, the local code kept in ``<column>_local``); a local code
  without a mapping stays NULL and is counted in ``silver.unmapped_codes``.

Rows deleted at the source are not in silver. Each table is rebuilt from bronze and written with a
MERGE that touches only rows whose content changed, so a rerun changes nothing.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.frames import live

TYPES = ("string", "date", "timestamp", "int", "double", "bool")


@dataclass(frozen=True)
class Entity:
    name: str                                  # silver.<name>
    key: str
    bronze: str                                # the entity's name in the regional / legacy sources
    columns: dict[str, str]                    # silver column → type (one of TYPES)
    description: str
    person: bool = True                        # rows name a resident (resident_id → person_id)
    codes: dict[str, str] = field(default_factory=dict)   # code column → code system (legacy: mapped)
    fhir: bool = False                         # the hospital's FHIR export has rows of it too
    org: str = "org_code"                      # the source column of the institution the row belongs to
    event: str | None = None                   # the column with the day the recorded event happened
    timely: bool = True                        # uploaded on its own (not as part of another record)


def _cols(spec: str) -> dict[str, str]:
    """``"a:date b c:int"`` → ``{"a": "date", "b": "string", "c": "int"}``."""
    out = {}
    for part in spec.split():
        name, _, typ = part.partition(":")
        out[name] = typ or "string"
        assert out[name] in TYPES, part
    return out


ENTITIES: tuple[Entity, ...] = (
    Entity("health_archives", "archive_no", "health_archives", _cols("doctor_id created_date:date"),
           "Electronic health archives (健康档案), one per archive number", event="created_date"),
    Entity("family_doctor_contracts", "contract_id", "family_doctor_contracts", _cols(
        "team_id doctor_id signed_date:date start_date:date end_date:date is_elderly:bool is_hypertension:bool "
        "is_diabetes:bool is_child:bool is_pregnant:bool is_disabled:bool is_poverty:bool fee_yuan:double"),
           "Family-doctor contracts (家庭医生签约) with the key groups they cover", event="signed_date"),
    Entity("hypertension_patients", "registry_id", "hypertension_registry", _cols(
        "doctor_id diagnosed_date:date registered_date:date"),
           "Hypertensive patients under management (高血压患者登记)", event="registered_date"),
    Entity("hypertension_followups", "followup_id", "hypertension_followups", _cols(
        "registry_id doctor_id followup_date:date followup_type sbp_mmhg:int dbp_mmhg:int heart_rate_bpm:int "
        "weight_kg:double medication_adherence classification next_followup_date:date"),
           "Hypertension follow-ups (高血压随访), typed", event="followup_date"),
    Entity("diabetes_patients", "registry_id", "diabetes_registry", _cols(
        "doctor_id diagnosed_date:date registered_date:date"),
           "Type-2 diabetes patients under management (糖尿病患者登记)", event="registered_date"),
    Entity("diabetes_followups", "followup_id", "diabetes_followups", _cols(
        "registry_id doctor_id followup_date:date followup_type fasting_glucose_mmol:double sbp_mmhg:int "
        "dbp_mmhg:int weight_kg:double medication_adherence classification next_followup_date:date"),
           "Diabetes follow-ups (糖尿病随访), typed", event="followup_date"),
    Entity("elderly_checkups", "checkup_id", "elderly_checkups", _cols(
        "doctor_id checkup_date:date height_cm:double weight_kg:double sbp_mmhg:int dbp_mmhg:int "
        "fasting_glucose_mmol:double has_ecg:bool has_ultrasound:bool conclusion"),
           "Annual check-ups of residents aged 65+ (老年人健康体检)", event="checkup_date"),
    Entity("child_health_checks", "check_id", "child_health_checks", _cols(
        "doctor_id check_date:date age_months:int height_cm:double weight_kg:double hemoglobin_g_l:double "
        "development"),
           "Health checks of children aged 0-6 (儿童健康检查)", event="check_date"),
    Entity("pregnancy_registrations", "pregnancy_id", "pregnancy_registrations", _cols(
        "doctor_id registered_date:date last_menstrual_date:date gestational_weeks:int "
        "expected_delivery_date:date"),
           "Pregnancy registrations (孕产妇建册)", event="registered_date"),
    Entity("prenatal_visits", "visit_id", "prenatal_visits", _cols(
        "pregnancy_id doctor_id visit_date:date gestational_weeks:int sbp_mmhg:int dbp_mmhg:int weight_kg:double "
        "hemoglobin_g_l:double"),
           "Prenatal visits (产前检查)", event="visit_date"),
    Entity("postpartum_visits", "visit_id", "postpartum_visits", _cols(
        "pregnancy_id doctor_id delivery_date:date visit_date:date delivery_outcome"),
           "Postpartum visits (产后访视)", event="visit_date"),
    Entity("immunizations", "immunization_id", "immunizations", _cols(
        "staff_id vaccine_code vaccine_name dose_no:int vaccinated_date:date lot_no"),
           "Vaccinations (预防接种)", event="vaccinated_date"),
    Entity("outpatient_visits", "visit_id", "outpatient_visits", _cols(
        "doctor_id visit_date:date diagnosis_code diagnosis_name fee_yuan:double"),
           "Outpatient visits (门诊就诊) with the ICD-10 diagnosis", event="visit_date", codes={"diagnosis_code": "icd10"}, fhir=True),
    Entity("prescriptions", "prescription_id", "prescriptions", _cols(
        "visit_id doctor_id prescribed_date:date drug_code drug_name is_essential_drug:bool is_antibiotic:bool "
        "is_iv_infusion:bool quantity:double amount_yuan:double"),
           "Prescription lines (处方明细) with essential-drug and antibiotic flags", event="prescribed_date", fhir=True,
           timely=False),
    Entity("inpatient_stays", "stay_id", "inpatient_stays", _cols(
        "doctor_id admission_date:date discharge_date:date diagnosis_code diagnosis_name total_cost_yuan:double"),
           "Inpatient stays (住院)", event="discharge_date", codes={"diagnosis_code": "icd10"}, fhir=True),
    Entity("referrals", "referral_id", "referrals", _cols(
        "direction from_org_code to_org_code doctor_id referral_date:date reason_code"),
           "Two-way referrals (双向转诊)", event="referral_date", org="from_org_code"),
    Entity("ecg_requests", "request_id", "ecg_requests", _cols(
        "doctor_id reading_org_code requested_at:timestamp recorded_at:timestamp file_format"),
           "Remote ECG requests (远程心电申请)", event="requested_at"),
    Entity("imaging_requests", "request_id", "imaging_requests", _cols(
        "doctor_id reading_org_code accession_no modality body_part requested_at:timestamp "
        "images_received_at:timestamp"),
           "Remote imaging requests (远程影像申请)", event="requested_at"),
    Entity("ecg_reports", "report_id", "ecg_reports", _cols(
        "request_id reader_id reported_at:timestamp rhythm heart_rate_bpm:int conclusion"),
           "Remote ECG reports (远程心电报告)", event="reported_at", person=False, org="reading_org_code"),
    Entity("imaging_reports", "report_id", "imaging_reports", _cols(
        "request_id reader_id reported_at:timestamp findings impression"),
           "Remote imaging reports (远程影像报告)", event="reported_at", person=False, org="reading_org_code"),
)
BY_NAME = {e.name: e for e in ENTITIES}


def bronze_sources(lake_root: str, entity: Entity) -> list[tuple[str, str]]:
    """``(source, path)`` of every regional / legacy bronze table of ``entity``."""
    bronze = Path(lake_root) / "bronze"
    if not bronze.is_dir():
        return []
    out = []
    for pattern in (f"regional__{entity.bronze}", f"legacy_*__{entity.bronze}"):
        for d in sorted(bronze.iterdir()):
            if fnmatch.fnmatchcase(d.name, pattern) and (d / "_delta_log").is_dir():
                out.append((d.name.split("__", 1)[0], str(d)))
    return out


def typed(column: str, typ: str):
    """Column ``column`` (a string as bronze keeps it) as ``typ``; NULL when it does not parse."""
    from pyspark.sql import functions as F

    c = F.col(column)
    if typ == "date":
        return F.try_to_date(F.substring(c.cast("string"), 1, 10), "yyyy-MM-dd")
    if typ == "timestamp":
        return F.try_to_timestamp(c.cast("string"), F.lit("yyyy-MM-dd HH:mm:ss"))
    if typ == "int":
        return F.round(c.try_cast("double")).try_cast("int")
    if typ == "double":
        return c.try_cast("double")
    if typ == "bool":
        v = F.lower(F.trim(c.cast("string")))
        return F.when(v.isin("1", "true", "y", "是"), F.lit(True)).when(v.isin("0", "false", "n", "否"), F.lit(False))
    return F.when(F.trim(c.cast("string")) != "", c.cast("string"))


def source_rows(df, entity: Entity, source: str):
    """One bronze table's live rows in the entity's silver shape, still with ``resident_id`` (and
    ``<code>_local`` for mapped code columns)."""
    from pyspark.sql import functions as F

    def col(name: str, typ: str = "string"):
        return typed(name, typ) if name in df.columns else F.lit(None).cast(_spark_type(typ))

    cols = [F.lit(source).alias("source"), col(entity.key).alias(entity.key)]
    if entity.person:
        cols.append(col("resident_id").alias("resident_id"))
    cols.append(col(entity.org).alias("org_code"))
    for name, typ in entity.columns.items():
        if name in entity.codes:
            mapped = f"{name}_icd10"
            if mapped in df.columns:     # a legacy system: its own code, mapped through its code map
                cols += [typed(mapped, "string").alias(name), col(name).alias(f"{name}_local")]
            else:
                cols += [col(name).alias(name), F.lit(None).cast("string").alias(f"{name}_local")]
        else:
            cols.append(col(name, typ).alias(name))
    cols += [col("created_at", "timestamp").alias("source_created_at"),
             col("updated_at", "timestamp").alias("source_updated_at")]
    return live(df).select(*cols)


def _spark_type(typ: str) -> str:
    return {"bool": "boolean"}.get(typ, typ)
