"""The performance evaluators' XLSX report: an indicator per township, county subtotals and the
city total, stamped with the catalogue version and the gold Delta versions it was built from.

Reads only the serving database (no Spark), as a scheduled report job would.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from spark_jobs.indicators.catalog import load_catalog

HEADERS = ("县（区）", "机构名称", "机构代码", "分子（规范管理人数）", "分母（管理人数）",
           "规范管理率", "目标值", "得分", "权重")
_THIN = Side(style="thin", color="999999")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEAD_FILL = PatternFill("solid", fgColor="DDEBF7")
_SUB_FILL = PatternFill("solid", fgColor="F2F2F2")


@dataclass
class ReportResult:
    path: str
    year: int
    townships: int


def build_htn_report(duckdb_path: Path, out_dir: Path, year: int | None = None,
                     indicator_id: str = "htn_standard_mgmt_rate") -> ReportResult:
    """Write ``<indicator>_<year>.xlsx`` to ``out_dir`` and return where it is."""
    ind = load_catalog()[indicator_id]
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        if year is None:
            year = con.execute("SELECT max(period_year) FROM mart_hypertension_management").fetchone()[0]
        rows = con.execute(
            """SELECT org_level, org_code, org_name, county_code, county_name, numerator, denominator,
                      rate, target, score, weight, catalog_version, input_versions
               FROM mart_hypertension_management WHERE period_year = ? AND indicator_id = ?
               ORDER BY county_code NULLS LAST, org_level DESC, org_code""", [year, indicator_id]).fetchall()
    finally:
        con.close()
    if not rows:
        raise ValueError(f"no values of {indicator_id} for {year} in {duckdb_path}")

    wb = Workbook()
    ws = wb.active
    ws.title = f"{year}年{ind.name_zh}"[:31]
    ws.append([f"{year}年度 基层医疗卫生机构绩效考核 —— {ind.name_zh}"])
    ws["A1"].font = Font(bold=True, size=14)
    catalog_version, input_versions = rows[0][-2], json.loads(rows[0][-1])
    ws.append([f"指标口径：分子 = {ind.numerator['zh']}；分母 = {ind.denominator['zh']}"])
    ws.append([f"目标值 {ind.target:.0%}；计分规则：达到目标得满分（{ind.weight:g}分），未达目标按 实际值÷目标值×权重 计分"])
    inputs = "，".join(f"{t} v{v}" for t, v in sorted(input_versions.items()))
    ws.append([f"指标目录版本 {catalog_version}；计算所用数据版本：{inputs}"])
    ws.append([f"生成时间 {dt.datetime.now(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M}"])
    ws.append([])
    ws.append(list(HEADERS))
    header_row = ws.max_row
    for c in range(1, len(HEADERS) + 1):
        cell = ws.cell(header_row, c)
        cell.font, cell.fill, cell.border = Font(bold=True), _HEAD_FILL, _BORDER
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)

    townships = 0
    for level, code, name, county_code, county_name, num, den, rate, target, score, weight, _, _ in rows:
        county_label = county_name or ""
        if level == "county":
            label = f"{county_name}合计"
        elif level == "city":
            label, county_label = f"{name}全市合计", ""
        else:
            label = name
            townships += 1
        ws.append([county_label, label, code, num, den, rate, target, score, weight])
        r = ws.max_row
        for c in range(1, len(HEADERS) + 1):
            ws.cell(r, c).border = _BORDER
            if level != "township":
                ws.cell(r, c).font = Font(bold=True)
                ws.cell(r, c).fill = _SUB_FILL
        ws.cell(r, 6).number_format = "0.0%"
        ws.cell(r, 7).number_format = "0%"
        ws.cell(r, 8).number_format = "0.00"
    for i, width in enumerate((12, 36, 14, 18, 14, 12, 8, 8, 8), start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = ws.cell(header_row + 1, 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{indicator_id}_{year}.xlsx"
    tmp = path.with_suffix(".xlsx.tmp")
    wb.save(tmp)
    tmp.replace(path)
    return ReportResult(str(path), int(year), townships)
