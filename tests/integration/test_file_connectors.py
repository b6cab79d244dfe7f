"""The file connectors (legacy county CSV, hospital FHIR bulk export, reference snapshots): rows
land in bronze normalised, bad rows in quarantine with their reason, read = loaded + quarantined,
every file is recorded, later corrections and deletions win, reruns and crashes change nothing."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from lakehouse import delta
from lakehouse.faults import InjectedFault
from lakehouse.idcard import make as make_id_card

pytestmark = pytest.mark.spark

LEGACY = "legacy_350923"
FHIR = "fhir_CH350900"
# what a rerun may legitimately change: when it wrote, and where this lake's landing zone is
VOLATILE = {"_ingested_at", "started_at", "finished_at", "rows_inserted", "rows_updated", "rows_unchanged",
            "landing_path", "_row_hash"}

CONTRACT = """\
source: legacy_350923
system: 屏南县基层医疗卫生信息系统（旧版）
encoding: gbk
delimiter: ","
void_flag: {column: 作废标志, deleted_values: ["1"]}
exports:
  - entity: residents
    file_prefix: JMXX
    key: resident_id
    updated_at: {column: 修改时间, format: "yyyy/MM/dd HH:mm:ss"}
    created_at: {column: 建档时间, format: "yyyy/MM/dd HH:mm:ss"}
    columns: {居民编号: resident_id, 身份证号: id_card_no, 姓名: name, 性别: sex, 出生日期: birth_date}
    dates: {birth_date: "yyyyMMdd"}
    id_card_column: id_card_no
  - entity: diagnoses
    file_prefix: ZDXX
    key: record_id
    updated_at: {column: 修改时间, format: "yyyy/MM/dd HH:mm:ss"}
    columns: {记录编号: record_id, 居民编号: resident_id, 诊断编码: diagnosis_code, 诊断日期: diagnosis_date}
    dates: {diagnosis_date: "yyyy/MM/dd"}
    code_columns: {diagnosis_code: dx_code_map}
code_maps:
  - name: dx_code_map
    file_prefix: DX_CODE_MAP
    key: local_code
    columns: {本地编码: local_code, ICD10编码: icd10_code, 诊断名称: name_zh}
"""


def _id(seq: int, born: dt.date = dt.date(1958, 3, 2), female: bool = False) -> str:
    return make_id_card("350923", born, seq, female)


def _bad_check_digit(number: str) -> str:
    return number[:17] + ("1" if number[17] != "1" else "2")


# ---- fixture deliveries ---------------------------------------------------------------------------

def _write_gbk(path: Path, lines: list[str | bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else line.encode("gbk")) + b"\r\n")


def build_legacy(home: Path) -> Path:
    """Three delivery days of the legacy county's exports; returns the contracts folder."""
    contracts = home / "contracts"
    contracts.mkdir(parents=True)
    (contracts / f"{LEGACY}.yaml").write_text(CONTRACT, encoding="utf-8")
    dz = home / "dropzone" / LEGACY
    hdr = "居民编号,身份证号,姓名,性别,出生日期,建档时间,修改时间,作废标志"
    _write_gbk(dz / "2025-12-21" / "DX_CODE_MAP.csv", ["本地编码,ICD10编码,诊断名称", "GXY01,I10,高血压",
                                                        "TNB01,E11.9,2型糖尿病"])
    _write_gbk(dz / "2025-12-21" / "JMXX_20251221.csv", [
        hdr,
        f"R001,{_id(11)},张三,1,19580302,2024/01/05 09:00:00,2024/01/05 09:00:00,0",
        f"R002,{_id(12, female=True)},李四,2,19580302,2024/01/06 09:00:00,2024/01/06 09:00:00,0",
        f"R003,{_id(13)},王五,1,19580302,2024/01/07 09:00:00,2024/01/07 09:00:00,0",
        f"R004,{_bad_check_digit(_id(14))},赵六,1,19580302,2024/01/08 09:00:00,2024/01/08 09:00:00,0",
        f"R005,{_id(15)},钱七,1,19800230,2024/01/09 09:00:00,2024/01/09 09:00:00,0",
        b"R006," + _id(16).encode() + b",\xff\xfe\xc0,1,19580302,2024/01/10 09:00:00,2024/01/10 09:00:00,0",
        f"R007,{_id(17)},孙八,1,19580302,2024/01/11 09:00:00,2024/01/11 09:00:00,0,多余字段",
        f",{_id(18)},周九,1,19580302,2024/01/12 09:00:00,2024/01/12 09:00:00,0",
        f"R010,{_id(21)},冯",                                    # a line break inside a value:
        "续十,1,19580302,2024/01/13 09:00:00,2024/01/13 09:00:00,0",  # two broken lines
    ])
    _write_gbk(dz / "2025-12-21" / "ZDXX_20251221.csv", [
        "记录编号,居民编号,诊断编码,诊断日期,修改时间,作废标志",
        "D001,R001,GXY01,2025/03/04,2025/03/04 10:00:00,0",
        "D002,R003,TNB01,2025/05/06,2025/05/06 10:00:00,0",
        "D003,R002,XX999,2025/06/07,2025/06/07 10:00:00,0",
    ])
    # day 2: a correction, a void, a new resident, and a column the contract does not know
    _write_gbk(dz / "2025-12-22" / "JMXX_20251222.csv", [
        hdr + ",联系电话",
        f"R001,{_id(11)},张三丰,1,19580302,2024/01/05 09:00:00,2025/12/22 09:00:00,0,13800000001",
        f"R002,{_id(12, female=True)},李四,2,19580302,2024/01/06 09:00:00,2025/12/22 10:00:00,1,",
        f"R008,{_id(19)},吴十,1,19700101,2025/12/22 08:00:00,2025/12/22 08:00:00,0,13800000008",
    ])
    _write_gbk(dz / "2025-12-23" / "JMXX_20251223.csv", [
        hdr + ",联系电话",
        f"R009,{_id(20)},郑一,2,19650505,2025/12/23 08:00:00,2025/12/23 08:00:00,0,13800000009",
    ])
    return contracts


def _ndjson(path: Path, lines: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
                    encoding="utf-8")


def _manifest(day_dir: Path, tx: str, types: list[str], deleted: bool = False) -> None:
    m = {"transactionTime": tx, "request": "https://his.example/fhir/$export", "requiresAccessToken": False,
         "output": [{"type": t, "url": f"https://his.example/bulk/{day_dir.name}/{t}.ndjson"} for t in types],
         "deleted": [{"type": "Bundle", "url": "deleted.ndjson"}] if deleted else [], "error": []}
    day_dir.mkdir(parents=True, exist_ok=True)
    (day_dir / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def _patient(pid: str, updated: str, *, id_card: str | None, phone: str = "13900000000", name: str = "王小明"):
    ident = [{"system": "urn:oid:2.16.156.10011.1.12.CH350900", "value": f"MRN{pid}"}]
    if id_card:
        ident.insert(0, {"system": "urn:oid:2.16.156.10011.1.5.1.6", "value": id_card})
    return {"resourceType": "Patient", "id": pid, "meta": {"lastUpdated": updated}, "identifier": ident,
            "name": [{"text": name}], "gender": "male", "birthDate": "1958-03-02",
            "telecom": [{"system": "phone", "value": phone}], "address": [{"text": "福建省宁德市蕉城区八一五路1号"}]}


def _coding(system: str, code: str, display: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}]}


def build_fhir(home: Path) -> None:
    dz = home / "dropzone" / FHIR
    d1 = dz / "2025-12-21"
    types = ["Patient", "Encounter", "Condition", "MedicationRequest", "Observation"]
    _manifest(d1, "2025-12-21T23:00:00+08:00", types)
    wrong_type = {"resourceType": "Encounter", "id": "e9", "meta": {"lastUpdated": "2025-12-20T10:00:00+08:00"}}
    no_id = _patient("x", "2025-12-20T10:00:00+08:00", id_card=_id(40))
    del no_id["id"]
    _ndjson(d1 / "Patient.ndjson", [
        _patient("p1", "2025-12-20T10:00:00+08:00", id_card=_id(31)),
        _patient("p2", "2025-12-20T11:00:00+08:00", id_card=_id(32), name="李华"),
        _patient("p3", "2025-12-20T12:00:00+08:00", id_card=_bad_check_digit(_id(33))),
        '{"resourceType":"Patient","id":"p4","meta":{"lastUpdated":"2025-12-20T10:00:00+08:00"},"name":[{"text":"赵',
        wrong_type, no_id, ""])
    ref = {"subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}}
    meta = {"meta": {"lastUpdated": "2025-12-20T10:30:00+08:00"}}
    _ndjson(d1 / "Encounter.ndjson", [{
        "resourceType": "Encounter", "id": "e1", **meta, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [_coding("urn:oid:2.16.156.10011.2.3.1.271", "01", "门诊")], "serviceType": {"text": "心血管内科"},
        "subject": {"reference": "Patient/p1"}, "period": {"start": "2025-12-20T09:00:00+08:00",
                                                           "end": "2025-12-20T09:20:00+08:00"},
        "serviceProvider": {"reference": "Organization/CH350900", "display": "宁德市医院"}}])
    _ndjson(d1 / "Condition.ndjson", [{
        "resourceType": "Condition", "id": "c1", **meta, **ref, "recordedDate": "2025-12-20T09:10:00+08:00",
        "code": _coding("http://hl7.org/fhir/sid/icd-10", "I10", "特发性（原发性）高血压")}])
    _ndjson(d1 / "MedicationRequest.ndjson", [{
        "resourceType": "MedicationRequest", "id": "m1", **meta, **ref, "status": "active", "intent": "order",
        "medicationCodeableConcept": _coding("urn:oid:2.16.156.10011.2.5.1.27", "X001", "苯磺酸氨氯地平片"),
        "authoredOn": "2025-12-20T09:15:00+08:00",
        "dispenseRequest": {"quantity": {"value": 28, "unit": "片"}}}])
    _ndjson(d1 / "Observation.ndjson", [
        {"resourceType": "Observation", "id": "o1", **meta, **ref, "status": "final",
         "code": _coding("http://loinc.org", "85354-9", "Blood pressure panel"),
         "effectiveDateTime": "2025-12-20T09:05:00+08:00",
         "component": [{"code": _coding("http://loinc.org", "8480-6"), "valueQuantity": {"value": 150, "unit": "mm[Hg]"}},
                       {"code": _coding("http://loinc.org", "8462-4"), "valueQuantity": {"value": 95, "unit": "mm[Hg]"}}]},
        {"resourceType": "Observation", "id": "o2", **meta, **ref, "status": "final",
         "code": _coding("http://loinc.org", "1558-6"), "effectiveDateTime": "2025-12-20T08:00:00+08:00",
         "valueQuantity": {"value": 7.2, "unit": "mmol/L"}}])
    # day 2: a correction, deletions (one Bundle line truncated), and a listed file never delivered
    d2 = dz / "2025-12-22"
    _manifest(d2, "2025-12-22T23:00:00+08:00", ["Patient", "Condition"], deleted=True)
    _ndjson(d2 / "Patient.ndjson", [_patient("p1", "2025-12-22T09:00:00+08:00", id_card=_id(31), phone="13911112222")])
    _ndjson(d2 / "deleted.ndjson", [
        {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Patient/p2"}},
            {"request": {"method": "DELETE", "url": "Observation/o2"}}]},
        '{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DEL'])
    d3 = dz / "2025-12-23"
    _manifest(d3, "2025-12-23T23:00:00+08:00", ["Patient"])
    _ndjson(d3 / "Patient.ndjson", [_patient("p5", "2025-12-23T08:00:00+08:00", id_card=_id(35))])


# ---- helpers --------------------------------------------------------------------------------------

def _path(s, table: str) -> str:
    return f"{s.lake_root}/{table.replace('.', '/')}"


def _df(spark, s, table: str):
    return spark.read.format("delta").load(_path(s, table))


def _tables(s) -> list[str]:
    root = Path(s.lake_root)
    return sorted(f"{p.parent.parent.name}.{p.parent.name}" for p in root.glob("*/*/_delta_log"))


def _state(spark, s) -> dict:
    """Every table's content hash and Delta version."""
    return {t: (delta.content_hash(spark, _path(s, t)), delta.table_version(spark, _path(s, t))) for t in _tables(s)}


def _content(spark, s, source: str) -> dict:
    """Every table of ``source`` (and its ops rows) without the columns a rerun may change."""
    from pyspark.sql import functions as F

    out = {}
    for t in _tables(s):
        df = _df(spark, s, t)
        if t.startswith("ops.") and "source" in df.columns:
            df = df.where(F.col("source") == source)
        elif t == "ops.schema_changes":
            df = df.where(F.col("table_name").contains(source))
        elif source not in t:
            continue
        df = df.drop(*VOLATILE)
        out[t] = sorted(r[0] for r in df.select(F.to_json(F.struct(*sorted(df.columns)))).collect())
    return out


def _by(df, key: str) -> dict:
    return {r[key]: r for r in df.collect()}


def _assert_batches_reconcile(spark, s, source: str) -> list:
    batches = _df(spark, s, "ops.ingest_batches").where(f"source = '{source}'").collect()
    assert batches
    for b in batches:
        assert b.rows_read == b.rows_loaded + b.rows_quarantined, b.batch_id
    return batches


# ---- legacy county CSV ----------------------------------------------------------------------------

def test_legacy_csv_exports(spark, settings_for, monkeypatch):
    from ingest.connectors import legacy_csv

    s = settings_for("legacy")
    contracts = build_legacy(s.home)

    # until: only the first delivery day
    legacy_csv.ingest(spark, s, until="2025-12-22", contracts_dir=contracts)
    res = _by(_df(spark, s, f"bronze.{LEGACY}__residents"), "resident_id")
    assert set(res) == {"R001", "R002", "R003", "R004"}
    assert res["R001"].name == "张三" and res["R001"].birth_date == "1958-03-02"
    assert res["R001"].updated_at == "2024-01-05 09:00:00" and res["R001"].is_deleted == 0
    first_day = _content(spark, s, LEGACY)

    # a crash after the first bronze commit, then a rerun: the same tables as the run above
    c = settings_for("legacy_crash")
    build_legacy(c.home)
    monkeypatch.setenv("JL_FAULT_INJECT", f"after_bronze:{LEGACY}__residents")
    with pytest.raises(InjectedFault):
        legacy_csv.ingest(spark, c, until="2025-12-22", contracts_dir=contracts)
    monkeypatch.delenv("JL_FAULT_INJECT")
    legacy_csv.ingest(spark, c, until="2025-12-22", contracts_dir=contracts)
    assert _content(spark, c, LEGACY) == first_day

    legacy_csv.ingest(spark, s, contracts_dir=contracts)
    res = _by(_df(spark, s, f"bronze.{LEGACY}__residents"), "resident_id")
    assert set(res) == {"R001", "R002", "R003", "R004", "R008", "R009"}
    assert res["R004"].id_card_no == _bad_check_digit(_id(14))      # as received: the EMPI judges it
    assert res["R001"].name == "张三丰" and res["R001"].updated_at == "2025-12-22 09:00:00"   # correction
    assert res["R002"].is_deleted == 1 and res["R003"].is_deleted == 0                       # void flag
    assert res["R001"].created_at == "2024-01-05 09:00:00"
    assert res["R008"]["联系电话"] == "13800000008" and res["R003"]["联系电话"] is None      # schema drift
    drift = _df(spark, s, "ops.schema_changes").where(f"table_name = 'bronze.{LEGACY}__residents'").collect()
    assert [r.column_name for r in drift] == ["联系电话"]

    dx = _by(_df(spark, s, f"bronze.{LEGACY}__diagnoses"), "record_id")
    assert dx["D001"].diagnosis_code == "GXY01" and dx["D001"].diagnosis_code_icd10 == "I10"
    assert dx["D002"].diagnosis_code_icd10 == "E11.9" and dx["D003"].diagnosis_code_icd10 is None
    assert dx["D001"].diagnosis_date == "2025-03-04"
    assert _by(_df(spark, s, f"bronze.{LEGACY}__dx_code_map"), "local_code")["GXY01"].name_zh == "高血压"

    q = {r.record_key: r for r in _df(spark, s, f"quarantine.{LEGACY}__residents").collect()}
    rel = "2025-12-21/JMXX_20251221.csv"
    assert {k: r.reason_code for k, r in q.items()} == {
        "R005": "impossible_date", "R006": "bad_encoding",
        "R007": "malformed_row", f"{rel}#line9": "missing_key", "R010": "malformed_row",
        f"{rel}#line11": "malformed_row"}
    assert q["R005"].reason_detail == "impossible_date:birth_date"
    assert q["R007"].reason_detail == "malformed_row:line8"
    assert "钱七" not in q["R005"].raw_payload and '"name":"钱*"' in q["R005"].raw_payload     # masked

    batches = _assert_batches_reconcile(spark, s, LEGACY)
    day1 = next(b for b in batches if b.entity == "residents" and b.rows_read == 10)
    assert (day1.rows_loaded, day1.rows_quarantined) == (4, 6)
    files = _by(_df(spark, s, "ops.landed_files").where(f"source = '{LEGACY}'"), "rel_path")
    assert set(files) == {"2025-12-21/DX_CODE_MAP.csv", rel, "2025-12-21/ZDXX_20251221.csv",
                          "2025-12-22/JMXX_20251222.csv", "2025-12-23/JMXX_20251223.csv"}
    assert files[rel].rows_read == 10 and files[rel].status == "loaded"
    assert Path(files[rel].landing_path).read_bytes() == (s.dropzone_root / LEGACY / rel).read_bytes()

    # a rerun, and a full reload (older files again), change nothing: no row, no new version
    before = _state(spark, s)
    assert legacy_csv.ingest(spark, s, contracts_dir=contracts) == []
    legacy_csv.ingest(spark, s, contracts_dir=contracts, full=True)
    assert _state(spark, s) == before


def test_legacy_contract_in_the_repository_parses():
    from ingest.connectors.legacy_csv import CONTRACTS_DIR, find_contracts

    if not list(CONTRACTS_DIR.glob("legacy_*.yaml")):
        pytest.skip("no legacy contract in the repository yet")
    for contract in find_contracts():
        assert contract.exports and all(e.key for e in contract.exports)


# ---- FHIR bulk export -----------------------------------------------------------------------------

def test_fhir_bulk_export(spark, settings_for, monkeypatch):
    from ingest.connectors import fhir

    s = settings_for("fhir")
    build_fhir(s.home)

    fhir.ingest(spark, s, until=dt.date(2025, 12, 22))
    pat = _by(_df(spark, s, f"bronze.{FHIR}__patient"), "patient_id")
    assert set(pat) == {"p1", "p2", "p3"}
    assert pat["p1"].phone == "13900000000"
    first_day = _content(spark, s, FHIR)

    c = settings_for("fhir_crash")
    build_fhir(c.home)
    monkeypatch.setenv("JL_FAULT_INJECT", f"after_bronze:{FHIR}__patient")
    with pytest.raises(InjectedFault):
        fhir.ingest(spark, c, until=dt.date(2025, 12, 22))
    monkeypatch.delenv("JL_FAULT_INJECT")
    fhir.ingest(spark, c, until=dt.date(2025, 12, 22))
    assert _content(spark, c, FHIR) == first_day

    fhir.ingest(spark, s)
    pat = _by(_df(spark, s, f"bronze.{FHIR}__patient"), "patient_id")
    assert set(pat) == {"p1", "p2", "p3", "p5"}
    assert pat["p3"].id_card_no == _bad_check_digit(_id(33))        # as received: the EMPI judges it
    p1 = pat["p1"]
    assert (p1.id_card_no, p1.mrn, p1.name, p1.gender, p1.birth_date) == (_id(31), "MRNp1", "王小明", "male", "1958-03-02")
    assert p1.phone == "13911112222" and p1.updated_at == "2025-12-22 09:00:00"             # correction
    assert json.loads(p1.resource_json)["id"] == "p1" and p1.is_deleted == 0
    assert pat["p2"].is_deleted == 1 and pat["p2"].updated_at == "2025-12-22 23:00:00" and pat["p2"].name is None

    enc = _df(spark, s, f"bronze.{FHIR}__encounter").first()
    assert (enc.encounter_id, enc.patient_id, enc.class_code, enc.department) == ("e1", "p1", "AMB", "心血管内科")
    assert (enc.period_start_at, enc.service_provider_id) == ("2025-12-20 09:00:00", "CH350900")
    cond = _df(spark, s, f"bronze.{FHIR}__condition").first()
    assert (cond.condition_id, cond.patient_id, cond.encounter_id, cond.icd10_code, cond.recorded_date) == \
        ("c1", "p1", "e1", "I10", "2025-12-20")
    med = _df(spark, s, f"bronze.{FHIR}__medication_request").first()
    assert (med.drug_code, med.drug_name, med.quantity, med.quantity_unit, med.authored_at) == \
        ("X001", "苯磺酸氨氯地平片", "28.0", "片", "2025-12-20 09:15:00")
    obs = _by(_df(spark, s, f"bronze.{FHIR}__observation"), "observation_id")
    assert (obs["o1"].loinc_code, obs["o1"].sbp_mmhg, obs["o1"].dbp_mmhg) == ("85354-9", "150.0", "95.0")
    assert obs["o2"].is_deleted == 1 and obs["o2"].loinc_code is None                       # tombstone

    q = {r.record_key: r.reason_code for r in _df(spark, s, f"quarantine.{FHIR}__patient").collect()}
    assert q == {"p4": "invalid_json", "e9": "wrong_resource_type",
                 "2025-12-21/Patient.ndjson#line6": "missing_key"}
    dq = _df(spark, s, f"quarantine.{FHIR}__deleted").collect()
    assert [(r.record_key, r.reason_code) for r in dq] == [("2025-12-22/deleted.ndjson#line2", "invalid_json")]

    _assert_batches_reconcile(spark, s, FHIR)
    files = _by(_df(spark, s, "ops.landed_files").where(f"source = '{FHIR}'"), "rel_path")
    assert files["2025-12-22/Condition.ndjson"].status == "quarantined"
    assert files["2025-12-22/Condition.ndjson"].reason == "missing_file"
    assert files["2025-12-21/Patient.ndjson"].rows_read == 6                                # blank line not counted
    assert files["2025-12-22/deleted.ndjson"].rows_read == 3
    delivered = {p.relative_to(s.dropzone_root / FHIR).as_posix()
                 for p in (s.dropzone_root / FHIR).rglob("*") if p.is_file()}
    assert delivered <= set(files)
    qf = _df(spark, s, f"quarantine.{FHIR}__files").collect()
    assert [(r.record_key, r.reason_code) for r in qf] == [("2025-12-22/Condition.ndjson", "missing_file")]

    before = _state(spark, s)
    assert fhir.ingest(spark, s) == []
    fhir.ingest(spark, s, full=True)     # day 1's p2 and o2 must not come back to life
    assert _state(spark, s) == before


# ---- reference snapshots --------------------------------------------------------------------------

def test_reference_snapshots(spark, settings_for):
    from ingest.connectors import reference

    s = settings_for("reference")
    ref = s.dropzone_root / "reference"
    ref.mkdir(parents=True)
    (ref / "icd10.csv").write_text("code,name_zh\nI10,特发性高血压\nE11.9,2型糖尿病\nJ45,哮喘\nI10,重复\n,无编码\n",
                                   encoding="utf-8")
    (ref / "gbt2260_areas.csv").write_text("code,name,level,parent_code\n350923,屏南县,3,350900\n", encoding="utf-8")
    (ref / "census_population.csv").write_text(
        "year,area_code,sex,age_band,population\n2020,350923101,1,65+,1234\n2020,350923101,2,65+,1301\n",
        encoding="utf-8")
    (ref / "reference").mkdir()      # the undated folder lakehouse.landing knows
    (ref / "reference" / "essential_drugs.csv").write_text(
        "drug_code,name_zh,category,is_antibiotic,dosage_form\nX001,苯磺酸氨氯地平片,心血管,0,片剂\n", encoding="utf-8")

    reference.ingest(spark, s)
    icd = _by(_df(spark, s, "bronze.reference__icd10"), "code")
    assert {k: (r.name_zh, r.is_deleted) for k, r in icd.items()} == {
        "I10": ("特发性高血压", 0), "E11.9": ("2型糖尿病", 0), "J45": ("哮喘", 0)}
    q = sorted(r.reason_code for r in _df(spark, s, "quarantine.reference__icd10").collect())
    assert q == ["duplicate_key", "missing_key"]
    assert _df(spark, s, "bronze.reference__census_population").count() == 2
    assert _df(spark, s, "bronze.reference__essential_drugs").first().drug_code == "X001"
    _assert_batches_reconcile(spark, s, "reference")
    assert _df(spark, s, "ops.landed_files").where("source = 'reference'").count() == 4

    assert reference.ingest(spark, s) == []       # unchanged files: nothing to do

    # a new snapshot: J45 retired (tombstone, name kept), E11.9 renamed, K29 new
    (ref / "icd10.csv").write_text("code,name_zh\nI10,特发性高血压\nE11.9,2型糖尿病不伴并发症\nK29,胃炎\n",
                                   encoding="utf-8")
    results = reference.ingest(spark, s)
    assert [r.rows_read for r in results] == [3, 1]
    icd = _by(_df(spark, s, "bronze.reference__icd10"), "code")
    assert {k: (r.name_zh, r.is_deleted) for k, r in icd.items()} == {
        "I10": ("特发性高血压", 0), "E11.9": ("2型糖尿病不伴并发症", 0), "K29": ("胃炎", 0), "J45": ("哮喘", 1)}
    _assert_batches_reconcile(spark, s, "reference")
    before = _state(spark, s)
    assert reference.ingest(spark, s) == []
    reference.ingest(spark, s, full=True)         # every snapshot again: no row, no new version
    assert _state(spark, s) == before
