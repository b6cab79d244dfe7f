"""Hospital FHIR R4 bulk export connector: ``fhir_CH350900`` NDJSON → ``bronze.fhir_CH350900__<entity>``.

Each delivery day holds a Bulk Data ``manifest.json`` (``transactionTime``, ``output: [{type,
url}]``, ``deleted: [{type: Bundle, url}]``) and one ``<ResourceType>.ndjson`` per type. Per day,
in order Patient, Encounter, Condition, MedicationRequest, Observation, then deletions:

- every listed output file is landed and read line by line with ``spark.read.text``; a line is
  parsed with ``from_json`` against the resource type's explicit schema, and the fields downstream
  needs are flattened into columns (below), next to ``resource_json`` (the line as received),
  ``updated_at`` (``meta.lastUpdated``, as ``yyyy-MM-dd HH:mm:ss`` Asia/Shanghai) and ``is_deleted``;
- a line gets a reason (NULL = good): ``invalid_json``, ``wrong_resource_type`` (not the file's
  type), ``missing_key`` (no ``id``), ``bad_updated_at``, ``impossible_date:<column>`` (a Patient's
  ID-card number is kept as received, valid or not: the EMPI judges it in silver); a rejected line without an id is
  quarantined as ``<rel_path>#line<n>``, and without its raw JSON (it holds unmasked identifiers;
  the immutable landing copy keeps it);
- ``deleted.ndjson`` holds transaction Bundles whose entries ``DELETE <Type>/<id>``: each becomes
  a tombstone (key, ``is_deleted = 1``, ``updated_at`` = the manifest's ``transactionTime``, every
  other column NULL) in its type's bronze table; unusable Bundle lines go to
  ``quarantine.fhir_CH350900__deleted``;
- a file the manifest lists but the day lacks is recorded as ``quarantined`` / ``missing_file``
  (``ops.landed_files`` and ``quarantine.fhir_CH350900__files``), a delivered ``.ndjson`` the
  manifest does not list as ``not_in_manifest``; a day without a readable manifest is loaded by
  the file-name convention, with the manifest recorded as ``missing_manifest`` / ``invalid_manifest``.

Loading goes through :func:`ingest.connectors.common.load_file_batch` (one batch per file and
entity; an older version never replaces a newer one in bronze); batches, then files, are recorded
last, once per run.

Columns (besides ``updated_at``, ``is_deleted``, ``resource_json``):

- patient: patient_id, id_card_no, mrn, name, gender, birth_date, phone, address, deceased_date,
  active
- encounter: encounter_id, patient_id, status, class_code, type_code, type_display, department,
  period_start_at, period_end_at, service_provider_id, service_provider
- condition: condition_id, patient_id, encounter_id, icd10_code, display, clinical_status,
  onset_date, recorded_date
- medication_request: medication_request_id, patient_id, encounter_id, status, drug_code,
  drug_name, authored_at, quantity, quantity_unit, dosage_text
- observation: observation_id, patient_id, encounter_id, status, loinc_code, display, effective_at,
  value, unit, sbp_mmhg, dbp_mmhg (the BP panel's components, or the SBP / DBP observation's value)
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ingest.connectors import common
from lakehouse import ops
from lakehouse.landing import DeliveredFile, land, record_files, sha256_of

SOURCE = "fhir_CH350900"
ID_CARD_SYSTEM = "urn:oid:2.16.156.10011.1.5.1.6"
MRN_SYSTEM_PREFIX = "urn:oid:2.16.156.10011.1.12."
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
LOINC_SYSTEM = "http://loinc.org"
DRUG_SYSTEM = "urn:oid:2.16.156.10011.2.5.1.27"
LOINC_SBP, LOINC_DBP, LOINC_BP_PANEL = "8480-6", "8462-4", "85354-9"
MANIFEST = "manifest.json"
DELETED_ENTITY = "deleted"
TS_OUT, DATE_OUT = "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd"

_CODING = "ARRAY<STRUCT<`system`: STRING, `code`: STRING, `display`: STRING>>"
_CONCEPT = f"STRUCT<`coding`: {_CODING}, `text`: STRING>"
_REF = "STRUCT<`reference`: STRING, `display`: STRING>"
_QTY = "STRUCT<`value`: DOUBLE, `unit`: STRING, `code`: STRING>"
_BASE = "`resourceType` STRING, `id` STRING, `meta` STRUCT<`lastUpdated`: STRING>"

# the parts of each resource downstream needs (the whole resource stays in resource_json)
SCHEMAS = {
    "Patient": _BASE + (
        ", `identifier` ARRAY<STRUCT<`system`: STRING, `value`: STRING>>"
        ", `name` ARRAY<STRUCT<`text`: STRING, `family`: STRING, `given`: ARRAY<STRING>>>"
        ", `gender` STRING, `birthDate` STRING, `active` BOOLEAN"
        ", `telecom` ARRAY<STRUCT<`system`: STRING, `value`: STRING>>"
        ", `address` ARRAY<STRUCT<`text`: STRING, `line`: ARRAY<STRING>, `city`: STRING, `district`: STRING, "
        "`state`: STRING>>"
        ", `deceasedBoolean` BOOLEAN, `deceasedDateTime` STRING"),
    "Encounter": _BASE + (
        f", `status` STRING, `class` STRUCT<`system`: STRING, `code`: STRING, `display`: STRING>"
        f", `type` ARRAY<{_CONCEPT}>, `serviceType` {_CONCEPT}, `subject` {_REF}"
        f", `period` STRUCT<`start`: STRING, `end`: STRING>, `serviceProvider` {_REF}"
        f", `location` ARRAY<STRUCT<`location`: {_REF}>>"),
    "Condition": _BASE + (
        f", `code` {_CONCEPT}, `subject` {_REF}, `encounter` {_REF}, `clinicalStatus` {_CONCEPT}"
        ", `onsetDateTime` STRING, `recordedDate` STRING"),
    "MedicationRequest": _BASE + (
        f", `status` STRING, `medicationCodeableConcept` {_CONCEPT}, `subject` {_REF}, `encounter` {_REF}"
        ", `authoredOn` STRING, `dosageInstruction` ARRAY<STRUCT<`text`: STRING>>"
        f", `dispenseRequest` STRUCT<`quantity`: {_QTY}>"),
    "Observation": _BASE + (
        f", `status` STRING, `code` {_CONCEPT}, `subject` {_REF}, `encounter` {_REF}"
        f", `effectiveDateTime` STRING, `valueQuantity` {_QTY}"
        f", `component` ARRAY<STRUCT<`code`: {_CONCEPT}, `valueQuantity`: {_QTY}>>"),
}
BUNDLE_SCHEMA = _BASE + (", `type` STRING, `timestamp` STRING"
                         ", `entry` ARRAY<STRUCT<`request`: STRUCT<`method`: STRING, `url`: STRING>>>")


@dataclass(frozen=True)
class Resource:
    type: str
    entity: str
    key: str
    columns: tuple[str, ...]          # flattened columns, key first
    dates: tuple[str, ...] = ()       # columns normalised to yyyy-MM-dd
    timestamps: tuple[str, ...] = ()  # columns normalised to yyyy-MM-dd HH:mm:ss


RESOURCES = (
    Resource("Patient", "patient", "patient_id",
             ("patient_id", "id_card_no", "mrn", "name", "gender", "birth_date", "phone", "address",
              "deceased_date", "active"), dates=("birth_date", "deceased_date")),
    Resource("Encounter", "encounter", "encounter_id",
             ("encounter_id", "patient_id", "status", "class_code", "type_code", "type_display", "department",
              "period_start_at", "period_end_at", "service_provider_id", "service_provider"),
             timestamps=("period_start_at", "period_end_at")),
    Resource("Condition", "condition", "condition_id",
             ("condition_id", "patient_id", "encounter_id", "icd10_code", "display", "clinical_status",
              "onset_date", "recorded_date"), dates=("onset_date", "recorded_date")),
    Resource("MedicationRequest", "medication_request", "medication_request_id",
             ("medication_request_id", "patient_id", "encounter_id", "status", "drug_code", "drug_name",
              "authored_at", "quantity", "quantity_unit", "dosage_text"), timestamps=("authored_at",)),
    Resource("Observation", "observation", "observation_id",
             ("observation_id", "patient_id", "encounter_id", "status", "loinc_code", "display", "effective_at",
              "value", "unit", "sbp_mmhg", "dbp_mmhg"), timestamps=("effective_at",)),
)
BY_TYPE = {r.type: r for r in RESOURCES}
TAIL = ("updated_at", "is_deleted", "resource_json")

for _r in RESOURCES:
    common.bronze_table(SOURCE, _r.entity, (_r.key,))
    common.quarantine_table(SOURCE, _r.entity)


# ---- flattening -----------------------------------------------------------------------------------

def _first(arr):
    from pyspark.sql import functions as F

    return F.get(arr, 0)


def _coding(concept, system: str | None = None):
    """The first coding of a CodeableConcept (of ``system`` when given)."""
    from pyspark.sql import functions as F

    codings = concept["coding"]
    if system:
        codings = F.filter(codings, lambda c: c["system"] == F.lit(system))
    return _first(codings)


def _ref_id(ref, type_: str):
    from pyspark.sql import functions as F

    return F.nullif(F.regexp_extract(ref["reference"], rf"^(?:.*/)?{type_}/([^/]+)$", 1), F.lit(""))


def _component_value(r, code: str):
    from pyspark.sql import functions as F

    hit = _first(F.filter(r["component"], lambda c: F.exists(c["code"]["coding"], lambda x: x["code"] == F.lit(code))))
    return hit["valueQuantity"]["value"]


def _ts(c):
    from pyspark.sql import functions as F

    return F.try_to_timestamp(c)


def flatten(resource: Resource, r):
    """The flattened columns of ``resource`` from the parsed struct ``r`` (strings, raw values;
    dates and timestamps are normalised by the caller)."""
    from pyspark.sql import functions as F

    t = resource.type
    if t == "Patient":
        ident = r["identifier"]
        name = _first(r["name"])
        addr = _first(r["address"])
        cols = {
            "patient_id": r["id"],
            "id_card_no": _first(F.filter(ident, lambda i: i["system"] == F.lit(ID_CARD_SYSTEM)))["value"],
            "mrn": _first(F.filter(ident, lambda i: i["system"].startswith(MRN_SYSTEM_PREFIX)))["value"],
            "name": F.coalesce(name["text"], F.concat(F.coalesce(name["family"], F.lit("")),
                                                       F.array_join(name["given"], ""))),
            "gender": r["gender"], "birth_date": r["birthDate"],
            "phone": _first(F.filter(r["telecom"], lambda x: x["system"] == F.lit("phone")))["value"],
            "address": F.coalesce(addr["text"], F.array_join(addr["line"], "")),
            "deceased_date": r["deceasedDateTime"], "active": r["active"].cast("string"),
        }
    elif t == "Encounter":
        typ = _first(r["type"])
        cols = {
            "encounter_id": r["id"], "patient_id": _ref_id(r["subject"], "Patient"), "status": r["status"],
            "class_code": r["class"]["code"], "type_code": _coding(typ)["code"],
            "type_display": F.coalesce(_coding(typ)["display"], typ["text"]),
            "department": F.coalesce(r["serviceType"]["text"], _coding(r["serviceType"])["display"],
                                     _first(r["location"])["location"]["display"]),
            "period_start_at": r["period"]["start"], "period_end_at": r["period"]["end"],
            "service_provider_id": _ref_id(r["serviceProvider"], "Organization"),
            "service_provider": F.coalesce(r["serviceProvider"]["display"], r["serviceProvider"]["reference"]),
        }
    elif t == "Condition":
        icd = _coding(r["code"], ICD10_SYSTEM)
        cols = {
            "condition_id": r["id"], "patient_id": _ref_id(r["subject"], "Patient"),
            "encounter_id": _ref_id(r["encounter"], "Encounter"), "icd10_code": icd["code"],
            "display": F.coalesce(icd["display"], r["code"]["text"]),
            "clinical_status": _coding(r["clinicalStatus"])["code"],
            "onset_date": r["onsetDateTime"], "recorded_date": r["recordedDate"],
        }
    elif t == "MedicationRequest":
        med = r["medicationCodeableConcept"]
        drug = F.coalesce(_coding(med, DRUG_SYSTEM), _coding(med))
        qty = r["dispenseRequest"]["quantity"]
        cols = {
            "medication_request_id": r["id"], "patient_id": _ref_id(r["subject"], "Patient"),
            "encounter_id": _ref_id(r["encounter"], "Encounter"), "status": r["status"],
            "drug_code": drug["code"], "drug_name": F.coalesce(drug["display"], med["text"]),
            "authored_at": r["authoredOn"], "quantity": qty["value"].cast("string"),
            "quantity_unit": F.coalesce(qty["unit"], qty["code"]),
            "dosage_text": _first(r["dosageInstruction"])["text"],
        }
    elif t == "Observation":
        loinc = F.coalesce(_coding(r["code"], LOINC_SYSTEM), _coding(r["code"]))
        value = r["valueQuantity"]["value"]
        cols = {
            "observation_id": r["id"], "patient_id": _ref_id(r["subject"], "Patient"),
            "encounter_id": _ref_id(r["encounter"], "Encounter"), "status": r["status"],
            "loinc_code": loinc["code"], "display": F.coalesce(loinc["display"], r["code"]["text"]),
            "effective_at": r["effectiveDateTime"], "value": value.cast("string"),
            "unit": F.coalesce(r["valueQuantity"]["unit"], r["valueQuantity"]["code"]),
            "sbp_mmhg": F.coalesce(_component_value(r, LOINC_SBP),
                                   F.when(loinc["code"] == LOINC_SBP, value)).cast("string"),
            "dbp_mmhg": F.coalesce(_component_value(r, LOINC_DBP),
                                   F.when(loinc["code"] == LOINC_DBP, value)).cast("string"),
        }
    else:  # pragma: no cover - RESOURCES is closed
        raise ValueError(t)
    return [cols[c].cast("string").alias(c) for c in resource.columns]


def _impossible(parsed):
    from pyspark.sql import functions as F

    return parsed.isNull() | (parsed < F.lit("1900-01-01")) | (parsed > F.lit("2100-12-31"))


def read_resources(spark, landed: Path, resource: Resource, rel_path: str):
    """The checked rows (flattened columns, ``updated_at``, ``is_deleted``, ``resource_json``,
    ``__reason``) of one ``<Type>.ndjson`` landing copy."""
    from pyspark.sql import functions as F

    lines = common.add_line_numbers(spark.read.text(str(landed)))
    lines = lines.where(F.trim("value") != "")        # a blank line is not a record
    raw = F.trim(F.col("value"))
    r = F.from_json(F.col("value"), SCHEMAS[resource.type])
    df = lines.select("__line", raw.alias("__raw"), r.alias("r"),
                      (F.try_parse_json(F.col("value")).isNull() | ~raw.startswith("{")).alias("__bad_json"))
    flat = flatten(resource, F.col("r"))
    upd = F.date_format(_ts(F.col("r.meta.lastUpdated")), TS_OUT)
    df = df.select("__line", "__raw", "__bad_json", F.col("r.resourceType").alias("__type"), *flat,
                   upd.alias("updated_at"))
    key = F.col(resource.key)
    checks = [(F.col("__bad_json"), F.lit("invalid_json")),
              (F.col("__type").isNull() | (F.col("__type") != F.lit(resource.type)),
               F.concat(F.lit("wrong_resource_type:"), F.coalesce(F.col("__type"), F.lit("none")))),
              (key.isNull() | (F.trim(key) == ""), F.lit("missing_key")),
              (F.col("updated_at").isNull(), F.lit("bad_updated_at"))]
    norm = {c: F.date_format(_ts(F.col(c)), DATE_OUT) for c in resource.dates}
    norm |= {c: F.date_format(_ts(F.col(c)), TS_OUT) for c in resource.timestamps}
    for c, parsed in norm.items():
        checks.append((F.col(c).isNotNull() & _impossible(parsed), F.lit(f"impossible_date:{c}")))
    reason = None
    for cond, why in checks:
        reason = F.when(cond, why) if reason is None else reason.when(cond, why)
    df = df.withColumn(common.REASON, reason)
    bad = F.col(common.REASON).isNotNull()
    # a truncated line usually still shows its id: quarantine it under that, else under its line
    raw_id = F.nullif(F.regexp_extract("__raw", r'"id"\s*:\s*"([^"]+)"', 1), F.lit(""))
    line_key = F.concat(F.lit(f"{rel_path}#line"), F.col("__line").cast("string"))
    df = df.withColumns({
        **{c: F.coalesce(p, F.col(c)) for c, p in norm.items()},
        resource.key: F.when(bad & (key.isNull() | (F.trim(key) == "")), F.coalesce(raw_id, line_key)).otherwise(key),
        "is_deleted": F.lit(0),
        "resource_json": F.when(~bad, F.col("__raw")),
    })
    return df.select(*resource.columns, *TAIL, common.REASON)


def read_deletions(spark, landed: Path, rel_path: str, transaction_time: str | None, fallback_time: str):
    """``deleted.ndjson`` as ``{entity: checked tombstone rows}``, the rows that name no known
    resource type under :data:`DELETED_ENTITY`. A tombstone's ``updated_at`` is the export's
    ``transactionTime``, else the Bundle's own time, else ``fallback_time`` (the delivery day's end)."""
    from pyspark.sql import functions as F

    lines = common.add_line_numbers(spark.read.text(str(landed))).where(F.trim("value") != "")
    raw = F.trim(F.col("value"))
    b = F.from_json(F.col("value"), BUNDLE_SCHEMA)
    df = lines.select("__line", raw.alias("__raw"), b.alias("b"),
                      (F.try_parse_json(F.col("value")).isNull() | ~raw.startswith("{")).alias("__bad_json"))
    line_reason = (F.when(F.col("__bad_json"), F.lit("invalid_json"))
                   .when(F.coalesce(F.col("b.resourceType"), F.lit("")) != "Bundle",
                         F.concat(F.lit("wrong_resource_type:"), F.coalesce(F.col("b.resourceType"), F.lit("none")))))
    df = df.withColumn("__line_reason", line_reason)
    line_key = F.concat(F.lit(f"{rel_path}#line"), F.col("__line").cast("string"))
    when = F.date_format(F.coalesce(_ts(F.lit(transaction_time).cast("string")), _ts(F.col("b.timestamp")),
                                    _ts(F.col("b.meta.lastUpdated")), _ts(F.lit(fallback_time).cast("string"))), TS_OUT)

    # a truncated Bundle usually still names what it deletes: file it under that resource's id
    named = F.nullif(F.regexp_extract("__raw", r'"url"\s*:\s*"(?:[^"]*/)?[A-Za-z]+/([^"/]+)"', 1), F.lit(""))
    bad_lines = df.where(F.col("__line_reason").isNotNull()).select(
        F.coalesce(named, F.col("b.id"), line_key).alias("record_key"), F.lit(None).cast("string").alias("updated_at"),
        F.lit(1).alias("is_deleted"), F.col("__line_reason").alias(common.REASON))
    entries = (df.where(F.col("__line_reason").isNull())
               .select("__line", when.alias("updated_at"), F.posexplode(F.col("b.entry")).alias("__pos", "e")))
    url = F.col("e.request.url")
    entries = entries.select(
        "__line", "__pos", "updated_at",
        F.nullif(F.regexp_extract(url, r"^(?:.*/)?([A-Za-z]+)/([^/?#]+)$", 1), F.lit("")).alias("__type"),
        F.nullif(F.regexp_extract(url, r"^(?:.*/)?([A-Za-z]+)/([^/?#]+)$", 2), F.lit("")).alias("__id"),
        F.upper(F.col("e.request.method")).alias("__method"))
    entry_key = F.concat(F.lit(f"{rel_path}#line"), F.col("__line").cast("string"), F.lit(".entry"),
                         F.col("__pos").cast("string"))
    entries = entries.withColumn(common.REASON, F.when(F.coalesce(F.col("__method"), F.lit("")) != "DELETE",
                                                       F.lit("not_a_delete"))
                                 .when(F.col("__id").isNull(), F.lit("missing_key"))
                                 .when(F.col("updated_at").isNull(), F.lit("bad_updated_at")))
    out = {}
    known = list(BY_TYPE)
    present = {r[0] for r in entries.select("__type").distinct().collect()}
    for res in RESOURCES:
        if res.type not in present:
            continue
        rows = entries.where(F.col("__type") == res.type)
        cols = [F.coalesce(F.col("__id"), entry_key).alias(res.key)]
        cols += [F.lit(None).cast("string").alias(c) for c in res.columns if c != res.key]
        out[res.entity] = rows.select(*cols, "updated_at", F.lit(1).alias("is_deleted"),
                                      F.lit(None).cast("string").alias("resource_json"), common.REASON)
    unknown = entries.where(F.col("__type").isNull() | ~F.col("__type").isin(*known)).select(
        entry_key.alias("record_key"), "updated_at", F.lit(1).alias("is_deleted"),
        F.coalesce(F.col(common.REASON),
                   F.concat(F.lit("wrong_resource_type:"), F.coalesce(F.col("__type"), F.lit("none")))).alias(common.REASON))
    out[DELETED_ENTITY] = bad_lines.unionByName(unknown)
    return out


# ---- the manifest and ingest ------------------------------------------------------------------

def _file_name(url: str) -> str:
    """A manifest url (absolute URL or path relative to the day's folder) → the file's name."""
    path = urlparse(url).path if "://" in url else url
    return PurePosixPath(path).name


def read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None) or (None, reason)."""
    if not path.is_file():
        return None, "missing_manifest"
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"invalid_manifest:{type(e).__name__}"
    if not isinstance(m, dict) or not isinstance(m.get("output", []), list):
        return None, "invalid_manifest:shape"
    return m, None


def _conventional_manifest(day_dir: Path) -> dict:
    """What a day without a manifest holds, by the file-name convention."""
    out = [{"type": t, "url": f"{t}.ndjson"} for t in BY_TYPE if (day_dir / f"{t}.ndjson").is_file()]
    deleted = [{"type": "Bundle", "url": "deleted.ndjson"}] if (day_dir / "deleted.ndjson").is_file() else []
    return {"transactionTime": None, "output": out, "deleted": deleted}


def ingest(spark, settings, *, until=None, full: bool = False, source: str = SOURCE) -> list[common.BatchResult]:
    """Load the FHIR bulk exports delivered before ``until`` that are not loaded yet (every one with
    ``full``), day by day. Returns the batches."""
    files = common.files_to_load(spark, settings, source, until=until, full=full)
    by_day: dict[str, dict[str, DeliveredFile]] = {}
    for f in files:
        by_day.setdefault(f.delivery_day, {})[f.rel_path] = f
    results: list[common.BatchResult] = []
    rows: list[dict] = []
    for day in sorted(by_day):
        day_results, day_rows = _ingest_day(spark, settings, source, day, by_day[day])
        results += day_results
        rows += day_rows
    # last: a crash before this line leaves the files unrecorded, and the rerun's MERGEs are no-ops
    common.record_ops(spark, settings.lake_root, results)
    record_files(spark, settings.lake_root, rows)
    return results


def _missing(source: str, day: str, name: str) -> DeliveredFile:
    return DeliveredFile(source, day, f"{day}/{name}", Path(), "", 0)


def _ingest_day(spark, settings, source: str, day: str, pending: dict[str, DeliveredFile]):
    lake_root = settings.lake_root
    started = dt.datetime.now()
    day_dir = Path(settings.dropzone_root) / source / day
    results, rows = [], []
    manifest_rel = f"{day}/{MANIFEST}"
    manifest_file = pending.pop(manifest_rel, None)
    if manifest_file is None and (day_dir / MANIFEST).is_file():   # loaded before: reuse its landing copy
        p = day_dir / MANIFEST
        manifest_file = DeliveredFile(source, day, manifest_rel, p, sha256_of(p), p.stat().st_size)
        manifest_pending = False
    else:
        manifest_pending = manifest_file is not None
    if manifest_file is not None:
        landed_manifest = land(manifest_file, settings.landing_root)
        manifest, problem = read_manifest(landed_manifest)
    else:
        landed_manifest, manifest, problem = None, None, "missing_manifest"
    if problem:
        f = manifest_file or _missing(source, day, MANIFEST)
        common.quarantine_file(spark, lake_root, f, problem.split(":")[0], problem, started=started)
        rows.append(common.landed_row(f, landed_manifest, "manifest", status=common.STATUS_QUARANTINED, reason=problem))
        manifest = _conventional_manifest(day_dir)
    elif manifest_pending:
        rows.append(common.landed_row(manifest_file, landed_manifest, "manifest"))
    tx_time = manifest.get("transactionTime")

    listed: list[tuple[str, str]] = []       # (type, file name) in load order
    order = {t: i for i, t in enumerate(BY_TYPE)}
    outputs = [o for o in manifest.get("output") or [] if isinstance(o, dict) and o.get("url")]
    for o in sorted(outputs, key=lambda o: order.get(o.get("type"), len(order))):
        listed.append((str(o.get("type")), _file_name(str(o["url"]))))
    for d in manifest.get("deleted") or []:
        if isinstance(d, dict) and d.get("url"):
            listed.append(("__deleted__", _file_name(str(d["url"]))))

    seen = set()
    for type_, name in listed:
        rel = f"{day}/{name}"
        if rel in seen:
            continue
        seen.add(rel)
        f = pending.pop(rel, None)
        if f is None:
            if not (day_dir / name).is_file():
                mf = _missing(source, day, name)
                common.quarantine_file(spark, lake_root, mf, "missing_file", f"the manifest lists {name}",
                                       started=started)
                rows.append(common.landed_row(mf, None, _entity_of(type_), status=common.STATUS_QUARANTINED,
                                              reason="missing_file"))
            continue       # delivered and already loaded
        landed = land(f, settings.landing_root)
        if f.size_bytes == 0:      # nothing of this type changed that day: no Spark job for it
            rows.append(common.landed_row(f, landed, DELETED_ENTITY if type_ == "__deleted__" else _entity_of(type_)))
            continue
        if type_ == "__deleted__":
            batches = read_deletions(spark, landed, f.rel_path, tx_time, f"{day} 23:59:59")
            file_results = []
            for entity, checked in batches.items():
                keys = ("record_key",) if entity == DELETED_ENTITY else (_resource_of(entity).key,)
                file_results.append(common.load_file_batch(
                    spark, lake_root, checked, source=source, entity=entity, keys=keys,
                    batch_id=ops.batch_id(source, entity, f.rel_path, f.sha256), source_file=f.rel_path,
                    delivery_day=day, started=started))
            file_results = [r for r in file_results if r.rows_read]
            results += file_results
            rows.append(common.landed_row(f, landed, DELETED_ENTITY, file_results))
        elif type_ in BY_TYPE:
            res = BY_TYPE[type_]
            checked = read_resources(spark, landed, res, f.rel_path)
            r = common.load_file_batch(spark, lake_root, checked, source=source, entity=res.entity, keys=(res.key,),
                                       batch_id=ops.batch_id(source, res.entity, f.rel_path, f.sha256),
                                       source_file=f.rel_path, delivery_day=day, started=started)
            results.append(r)
            rows.append(common.landed_row(f, landed, res.entity, [r]))
        else:
            rows.append(common.landed_row(f, landed, None, status=common.STATUS_SKIPPED,
                                          reason=f"unsupported_resource_type:{type_}"))
    for f in pending.values():        # delivered, but not in the manifest
        landed = land(f, settings.landing_root)
        if f.rel_path.lower().endswith(".ndjson"):
            common.quarantine_file(spark, lake_root, f, "not_in_manifest", started=started)
            rows.append(common.landed_row(f, landed, None, status=common.STATUS_QUARANTINED, reason="not_in_manifest"))
        else:
            rows.append(common.landed_row(f, landed, None, status=common.STATUS_SKIPPED, reason="not_an_export_file"))
    return results, rows


def _entity_of(type_: str) -> str:
    return DELETED_ENTITY if type_ == "__deleted__" else (BY_TYPE[type_].entity if type_ in BY_TYPE else type_)


def _resource_of(entity: str) -> Resource:
    return next(r for r in RESOURCES if r.entity == entity)

