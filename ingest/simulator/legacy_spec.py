"""The legacy county system's daily CSV exports: file names, Chinese headers, date formats.

One spec drives both the simulator's writer (``legacy.py``) and the connector contract
``ingest/connectors/contracts/legacy_<county_code>.yaml`` (rendered by ``contracts.py``), so the
two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

ENCODING = "gbk"
DELIMITER = ","
VOID_COLUMN = "作废标志"
UPDATED_COLUMN = "修改时间"
TIMESTAMP_FORMAT = "yyyy/MM/dd HH:mm:ss"
CODE_MAP_PREFIX = "DX_CODE_MAP"


@dataclass(frozen=True)
class Export:
    entity: str                  # the regional table this export corresponds to
    file_prefix: str
    created_column: str
    columns: tuple[tuple[str, str, str | None], ...]   # (legacy header, standard column, date format)
    id_card_column: str | None = None
    code_columns: tuple[tuple[str, str], ...] = ()      # (standard column, code map name)

    @property
    def key(self) -> str:
        return self.columns[0][1]

    @property
    def headers(self) -> list[str]:
        return [h for h, _, _ in self.columns] + [self.created_column, UPDATED_COLUMN, VOID_COLUMN]


_RESIDENT = ("居民编号", "resident_id", None)
_ORG_DOCTOR = (("管理机构", "org_code", None), ("责任医生", "doctor_id", None))

EXPORTS: tuple[Export, ...] = (
    Export("residents", "JMXX", "建档时间", (
        _RESIDENT, ("身份证号", "id_card_no", None), ("姓名", "name", None), ("性别", "sex", None),
        ("出生日期", "birth_date", "yyyyMMdd"), ("联系电话", "phone", None), ("现住址", "address", None),
        ("所属乡镇", "area_code", None), ("建档机构", "org_code", None)),
        id_card_column="id_card_no"),
    Export("health_archives", "JKDA", "建档时间", (
        ("档案编号", "archive_no", None), _RESIDENT, ("建档机构", "org_code", None),
        ("建档日期", "created_date", "yyyy/MM/dd"), ("责任医生", "doctor_id", None))),
    Export("family_doctor_contracts", "QYXX", "录入时间", (
        ("签约编号", "contract_id", None), _RESIDENT, ("签约团队", "team_id", None),
        ("签约机构", "org_code", None), ("签约医生", "doctor_id", None),
        ("签约日期", "signed_date", "yyyyMMdd"), ("生效日期", "start_date", "yyyyMMdd"),
        ("到期日期", "end_date", "yyyyMMdd"), ("老年人标志", "is_elderly", None),
        ("高血压标志", "is_hypertension", None), ("糖尿病标志", "is_diabetes", None),
        ("儿童标志", "is_child", None), ("孕产妇标志", "is_pregnant", None),
        ("残疾人标志", "is_disabled", None), ("贫困人口标志", "is_poverty", None),
        ("签约费用", "fee_yuan", None))),
    Export("hypertension_registry", "GXYDJ", "录入时间", (
        ("登记编号", "registry_id", None), _RESIDENT, *_ORG_DOCTOR,
        ("确诊日期", "diagnosed_date", "yyyyMMdd"), ("登记日期", "registered_date", "yyyy/MM/dd"))),
    Export("hypertension_followups", "GXYSF", "录入时间", (
        ("随访编号", "followup_id", None), ("登记编号", "registry_id", None), _RESIDENT,
        ("随访机构", "org_code", None), ("随访医生", "doctor_id", None),
        ("随访日期", "followup_date", "yyyy/MM/dd"), ("随访方式", "followup_type", None),
        ("收缩压", "sbp_mmhg", None), ("舒张压", "dbp_mmhg", None), ("心率", "heart_rate_bpm", None),
        ("体重", "weight_kg", None), ("服药依从性", "medication_adherence", None),
        ("随访分类", "classification", None), ("下次随访日期", "next_followup_date", "yyyyMMdd"))),
    Export("diabetes_registry", "TNBDJ", "录入时间", (
        ("登记编号", "registry_id", None), _RESIDENT, *_ORG_DOCTOR,
        ("确诊日期", "diagnosed_date", "yyyyMMdd"), ("登记日期", "registered_date", "yyyy/MM/dd"))),
    Export("diabetes_followups", "TNBSF", "录入时间", (
        ("随访编号", "followup_id", None), ("登记编号", "registry_id", None), _RESIDENT,
        ("随访机构", "org_code", None), ("随访医生", "doctor_id", None),
        ("随访日期", "followup_date", "yyyy/MM/dd"), ("随访方式", "followup_type", None),
        ("空腹血糖", "fasting_glucose_mmol", None), ("收缩压", "sbp_mmhg", None),
        ("舒张压", "dbp_mmhg", None), ("体重", "weight_kg", None),
        ("服药依从性", "medication_adherence", None), ("随访分类", "classification", None),
        ("下次随访日期", "next_followup_date", "yyyyMMdd"))),
    Export("elderly_checkups", "LNRTJ", "录入时间", (
        ("体检编号", "checkup_id", None), _RESIDENT, ("体检机构", "org_code", None),
        ("体检医生", "doctor_id", None), ("体检日期", "checkup_date", "yyyy/MM/dd"),
        ("身高", "height_cm", None), ("体重", "weight_kg", None), ("收缩压", "sbp_mmhg", None),
        ("舒张压", "dbp_mmhg", None), ("空腹血糖", "fasting_glucose_mmol", None),
        ("心电图", "has_ecg", None), ("B超", "has_ultrasound", None), ("体检结论", "conclusion", None))),
    Export("outpatient_visits", "MZJZ", "录入时间", (
        ("就诊流水号", "visit_id", None), _RESIDENT, ("就诊机构", "org_code", None),
        ("接诊医生", "doctor_id", None), ("就诊日期", "visit_date", "yyyyMMdd"),
        ("诊断编码", "diagnosis_code", None), ("诊断名称", "diagnosis_name", None),
        ("总费用", "fee_yuan", None)),
        code_columns=(("diagnosis_code", "dx_code_map"),)),
    Export("prescriptions", "CFMX", "录入时间", (
        ("处方明细号", "prescription_id", None), ("就诊流水号", "visit_id", None), _RESIDENT,
        ("开方机构", "org_code", None), ("开方医生", "doctor_id", None),
        ("开方日期", "prescribed_date", "yyyy/MM/dd"), ("药品编码", "drug_code", None),
        ("药品名称", "drug_name", None), ("基药标志", "is_essential_drug", None),
        ("抗菌药标志", "is_antibiotic", None), ("静脉输液标志", "is_iv_infusion", None),
        ("数量", "quantity", None), ("金额", "amount_yuan", None))),
)
EXPORT_BY_ENTITY = {e.entity: e for e in EXPORTS}

CODE_MAP_COLUMNS = (("本地编码", "local_code"), ("ICD10编码", "icd10_code"), ("诊断名称", "name_zh"))


def contract(county_code: str, county_name: str) -> dict:
    """The connector contract of the legacy system of ``county_code`` as a dict."""
    exports = []
    for e in EXPORTS:
        entry: dict = {
            "entity": e.entity,
            "file_prefix": e.file_prefix,
            "key": e.key,
            "updated_at": {"column": UPDATED_COLUMN, "format": TIMESTAMP_FORMAT},
            "created_at": {"column": e.created_column, "format": TIMESTAMP_FORMAT},
            "columns": {h: c for h, c, _ in e.columns},
            "dates": {c: f for _, c, f in e.columns if f},
        }
        if e.id_card_column:
            entry["id_card_column"] = e.id_card_column
        if e.code_columns:
            entry["code_columns"] = dict(e.code_columns)
        exports.append(entry)
    return {
        "source": f"legacy_{county_code}",
        "system": f"{county_name}基层医疗卫生信息系统（旧版）",
        "encoding": ENCODING,
        "delimiter": DELIMITER,
        "void_flag": {"column": VOID_COLUMN, "deleted_values": ["1"]},
        "exports": exports,
        "code_maps": [{"name": "dx_code_map", "file_prefix": CODE_MAP_PREFIX, "key": "local_code",
                       "columns": dict(CODE_MAP_COLUMNS)}],
    }
