"""``lakehouse`` — the platform's command line.

    lakehouse demo --residents 20000     simulate a city and run the whole slice, then summarise
    lakehouse simulate --residents N --days D [--pacs URL]   build the city's sources as of day D
    lakehouse run [--step S ...]         run pipeline steps (default: all after simulate)
    lakehouse ingest --all [--until DAY] [--full] | validate | conform | gold | serve | report | dashboards
    lakehouse indicators compute         every catalogued indicator, with its member records
    lakehouse indicators explain ID --org CODE --period P
                                         one value: parts, target, score, first members with reasons
    lakehouse summary                    rows per table, indicator values, where to look
    lakehouse empi evaluate              EMPI precision / recall against the simulator's ground truth
    lakehouse quality flags | scorecard | report | evaluate
                                         record flags; DQ scorecard; reconciliation + scorecard + Data Docs; flags vs defects
    lakehouse ecg process | worklist     analyse new ECG recordings; the reading worklist
    lakehouse ecg evaluate DIR           R-peak detection against reference annotations
    lakehouse imaging process | worklist catalogue new DICOM files; the imaging reading worklist
    lakehouse imaging inspect DIR --json parsing, de-identification and thumbnails, file by file
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lakehouse import pipeline
from lakehouse.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()


def _progress() -> Progress:
    return Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def _print(result: dict) -> None:
    console.print_json(json.dumps(result, default=str, ensure_ascii=False))


@app.command()
def simulate(residents: int = typer.Option(2000, help="number of residents"),
             seed: int = typer.Option(20250101, help="random seed (same seed, same city)"),
             start: str = typer.Option("2025-12-22", help="first simulated day of daily deliveries (YYYY-MM-DD)"),
             days: int = typer.Option(10, min=1, help="simulated days; the city is built as of start + days - 1"),
             counties: int = typer.Option(4, min=1, max=5),
             townships_per_county: int = typer.Option(15, min=1),
             media_files: bool = typer.Option(True, help="write DICOM and ECG files for remote-diagnosis requests"),
             pacs: str = typer.Option(None, "--pacs", help="send the imaging exams to this PACS (Orthanc base URL, "
                                      "e.g. http://127.0.0.1:58042) instead of dropping them as files")) -> None:
    """Build the simulated city: the regional database, the file deliveries and the ground truth."""
    with _progress() as prog:
        task = prog.add_task("simulating residents", total=residents)
        result = pipeline.simulate(residents=residents, seed=seed, start=start, days=days, counties=counties,
                                   townships_per_county=townships_per_county, media_files=media_files,
                                   progress=lambda n: prog.update(task, completed=n))
    if pacs:
        from dataclasses import asdict

        from ingest.simulator.pacs import store_dropzone_in_pacs

        sent = store_dropzone_in_pacs(get_settings().dropzone_root, pacs)
        result["pacs"] = {k: v for k, v in asdict(sent).items() if k != "instances"}
    _print(result)


def _run_steps(steps: tuple[str, ...]) -> dict:
    out = {}
    with _progress() as prog:
        task = prog.add_task("pipeline", total=len(steps))
        for step in steps:
            prog.update(task, description=f"{step}")
            t0 = time.monotonic()
            out[step] = pipeline.run_all(steps=(step,))[step]
            prog.console.log(f"[green]✓[/green] {step} ({time.monotonic() - t0:.1f} s)")
            prog.advance(task)
    return out


@app.command()
def run(step: list[str] = typer.Option(None, help=f"steps to run, in order; default: {', '.join(pipeline.PIPELINE)}")) -> None:
    """Run pipeline steps (all of them after the simulator by default)."""
    steps = tuple(step) if step else pipeline.PIPELINE
    unknown = [s for s in steps if s not in pipeline.STEPS]
    if unknown:
        raise typer.BadParameter(f"unknown steps {unknown}; known: {pipeline.STEPS}")
    _print(_run_steps(steps))


@app.command()
def ingest(all_sources: bool = typer.Option(False, "--all", help="every source kind (the default when no --source is given)"),
           source: list[str] = typer.Option(None, help="source kinds to ingest: reference, regional, legacy, fhir, dicom, ecg, "
                                                   "orthanc (the PACS, when JL_ORTHANC_URL is set)"),
           until: str = typer.Option(None, help="load only what was delivered before this day (YYYY-MM-DD, exclusive)"),
           full: bool = typer.Option(False, help="re-read everything delivered, not only what is new")) -> None:
    """Load what the sources delivered and is not loaded yet into bronze."""
    from ingest.connectors.sources import KNOWN_KINDS

    kinds = None if all_sources or not source else tuple(source)
    unknown = [k for k in kinds or () if k not in KNOWN_KINDS]
    if unknown:
        raise typer.BadParameter(f"unknown source kinds {unknown}; known: {', '.join(KNOWN_KINDS)}")
    _print(pipeline.ingest(full=full, sources=kinds, until=until,
                           progress=lambda k: console.log(f"ingesting {k}")))


@app.command()
def validate(layer: str = typer.Option("all", help="bronze, silver or all")) -> None:
    """Great Expectations suites of the bronze and silver tables; Data Docs."""
    if layer not in ("bronze", "silver", "all"):
        raise typer.BadParameter("layer is bronze, silver or all")
    out = {}
    if layer in ("bronze", "all"):
        out["bronze"] = pipeline.validate_bronze()
    if layer in ("silver", "all"):
        out["silver"] = pipeline.validate_silver()
    _print(out)
    held = {t: f for o in out.values() for t, f in o["held"].items()}
    if held:
        console.print(f"[red]{len(held)} table(s) held by a failed critical expectation; the steps that "
                      f"build on them keep their last good state:[/red] {', '.join(sorted(held))}")
        raise typer.Exit(1)


@app.command()
def conform() -> None:
    """The EMPI (person_id of every identity record, restricted.person_identity), then bronze → silver."""
    _print(pipeline.conform())


indicators_app = typer.Typer(no_args_is_help=True, help="The performance-assessment indicators (spark_jobs/indicators).")
app.add_typer(indicators_app, name="indicators")


@indicators_app.command("compute")
def indicators_compute(full: bool = typer.Option(False, "--full", help="recompute every period of every indicator, "
                                                "not only what changed since the last run"),
                       indicator: list[str] = typer.Option(None, "--indicator", help="only this indicator (repeatable)"),
                       period: str = typer.Option(None, "--period", help="also recompute this period from the current "
                                                  "data, changed or not: 2025, 2025-Q3 or 2025-07 (its months, "
                                                  "quarters and year)")) -> None:
    """Compute the catalogued indicators: values per org unit and period, with their members.
    Incremental by default: an indicator whose inputs did not change since its last run is
    skipped, and one whose new rows are dated is recomputed for their periods only."""
    interval = None
    if period:
        from spark_jobs.indicators.engine import period_interval
        try:
            interval = period_interval(period)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--period") from None
    _print(pipeline.compute_indicators(full=full, indicator_ids=indicator or None, interval=interval))


@indicators_app.command("explain")
def indicators_explain(indicator: str = typer.Argument(..., help="indicator id, e.g. htn_standard_mgmt_rate"),
                       org: str = typer.Option(..., "--org", help="org code: an institution, township centre, county or city bureau"),
                       period: str = typer.Option(..., "--period", help="2025, 2025-Q3 or 2025-07"),
                       level: str = typer.Option(None, "--level", help="institution | township | county | city "
                                                 "(a township centre has both an institution and a township value; "
                                                 "default: the wider)"),
                       limit: int = typer.Option(10, help="members shown on each side"),
                       as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables")) -> None:
    """One value taken apart: numerator, denominator, target, score, and the first members of the
    numerator and of the denominator outside it, with the reason for each."""
    from lakehouse.spark import get_spark
    from spark_jobs.indicators.engine import explain

    s = get_settings()
    try:
        out = explain(get_spark(s), s.lake_root, indicator, org, period, level, limit)
    except LookupError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        _print(out)
        return
    ind, v = out["indicator"], out["value"]
    levels = {"institution": "机构", "township": "乡镇（街道）", "county": "县（区）", "city": "市"}
    kinds = {"person": "人", "visit": "就诊", "prescription": "处方", "prescription_line": "处方明细",
             "stay": "住院", "referral": "转诊", "request": "申请", "report": "报告"}
    number = (lambda x: f"{x:,.0f}") if ind["unit"] in ("count", "rate") and ind["id"] not in (
        "htn_mgmt_rate", "dm_mgmt_rate") else (lambda x: f"{x:,.2f}")
    shown = (lambda x: "—" if x is None else f"{x:.2%}") if ind["unit"] == "rate" else \
        (lambda x: "—" if x is None else f"{x:,.2f}")
    head = Table(title=f"{ind['name_zh']}（{ind['id']}） {v['org_name'] or v['org_code']} {v['period']}",
                 show_header=False)
    score = "不计分（总量指标）" if v["score"] is None and ind["scoring"] == "none" else \
        "—" if v["score"] is None else f"{v['score']:.2f} / {v['weight']:.1f}"
    for label, text in (("指标值", shown(v["value"])),
                        ("分子", f"{number(v['numerator'])}（{ind['numerator_zh']}）"),
                        ("分母", "—" if v["denominator"] is None else f"{number(v['denominator'])}（{ind['denominator_zh']}）"),
                        ("目标值", shown(v["target"])), ("得分", score),
                        ("真实性调整后得分", "—" if v.get("adjusted_score") is None or v.get("authenticity_coefficient") is None
                         else f"{v['adjusted_score']:.2f}（真实性系数 {v['authenticity_coefficient']:.2f}）"),
                        ("层级", levels.get(v["org_level"], v["org_level"])), ("口径版本", v["catalog_version"]),
                        ("输入数据版本", v["input_versions"])):
        head.add_row(label, text)
    console.print(head)
    sides = [(f"计入分子的成员（共{out['members_in_numerator']:,}个，显示前"
              f"{min(limit, out['members_in_numerator'])}个）", out["numerator_members"])]
    if v["denominator"] is not None:
        sides.append((f"在分母但未计入分子的成员（共{out['members_outside_numerator']:,}个，显示前"
                      f"{min(limit, out['members_outside_numerator'])}个）", out["outside_numerator_members"]))
    for title, rows in sides:
        t = Table(title=title)
        for col in ("成员", "类型", "机构", "原因"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["member_id"], kinds.get(r["member_type"], r["member_type"]), r["member_org_code"] or "",
                      r["reason"] or "")
        console.print(t)


@app.command()
def gold(force: bool = typer.Option(False, "--force", help="build even if nothing changed since the last build")) -> None:
    """dbt build: the gold marts (skipped when silver, gold and the dbt project are unchanged)."""
    _print(pipeline.build_gold(force=force))


@app.command()
def serve() -> None:
    """Export gold to the serving database."""
    _print(pipeline.export_serving())


@app.command()
def report() -> None:
    """Build the XLSX report."""
    _print(pipeline.build_reports())


@app.command()
def dashboards() -> None:
    """Import the Superset bundle."""
    _print(pipeline.provision_dashboards())


def table_rows(lake_root: str) -> dict[str, int]:
    """Rows per Delta table under the lake root (read with delta-rs; no Spark)."""
    from deltalake import DeltaTable

    out = {}
    root = Path(lake_root)
    for layer_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for tdir in sorted(p for p in layer_dir.iterdir() if (p / "_delta_log").is_dir()):
            out[f"{layer_dir.name}.{tdir.name}"] = DeltaTable(str(tdir)).to_pyarrow_dataset().count_rows()
    return out


@app.command()
def summary() -> None:
    """Rows per table, the indicator values, and where to look."""
    import duckdb

    s = get_settings()
    rows = Table(title="Tables (rows)", show_lines=False)
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    if Path(s.lake_root).exists():
        for name, n in table_rows(s.lake_root).items():
            rows.add_row(name, f"{n:,}")
    console.print(rows)
    if s.serving_duckdb_path and s.serving_duckdb_path.exists():
        con = duckdb.connect(str(s.serving_duckdb_path), read_only=True)
        vals = con.execute(
            """SELECT period_year, org_level, org_name, numerator, denominator, rate, score
               FROM mart_hypertension_management WHERE org_level IN ('city', 'county')
               ORDER BY period_year DESC, org_level DESC, org_code""").fetchall()
        con.close()
        t = Table(title="高血压患者规范管理率 (city and counties)")
        for c in ("年度", "层级", "名称", "分子", "分母", "规范管理率", "得分"):
            t.add_column(c)
        for y, lvl, name, num, den, rate, score in vals:
            t.add_row(str(y), lvl, name, str(num), str(den), f"{rate:.1%}" if rate is not None else "—",
                      f"{score:.2f}" if score is not None else "—")
        console.print(t)
    where = pipeline.paths(s)
    console.print("\n[bold]Where to look[/bold]")
    for label, key in (("Delta lake", "lake"), ("Source database", "source_db"),
                       ("Serving database (DuckDB)", "serving_db"), ("Data Docs", "data_docs"),
                       ("Reports (XLSX)", "reports")):
        console.print(f"  {label:<28} {where[key]}")
    console.print("  Airflow + Superset            make up  → http://127.0.0.1:8080 (Airflow), "
                  "http://127.0.0.1:8088 (Superset); logins printed by make up")


@app.command()
def demo(residents: int = typer.Option(20000, help="number of residents of the demo city")) -> None:
    """Simulate a city, run every step of the slice, and print the summary."""
    t0 = time.monotonic()
    simulate(residents=residents, seed=20250101, start="2025-12-22", days=10, counties=4,
             townships_per_county=15, media_files=True, pacs=None)
    _run_steps(pipeline.PIPELINE)
    summary()
    console.print(f"\n[bold green]demo finished in {time.monotonic() - t0:.0f} s[/bold green]")


ecg_app = typer.Typer(no_args_is_help=True, help="ECG pre-processing (spark_jobs/ecg).")
app.add_typer(ecg_app, name="ecg")


@ecg_app.command("process")
def ecg_process() -> None:
    """Analyse every ECG recording landed in bronze and not processed yet (silver.ecg_recordings,
    ecg_features, ecg_flags; unreadable ones to quarantine.ecg_recordings)."""
    _print(pipeline.process_ecg())


@ecg_app.command("worklist")
def ecg_worklist(limit: int = typer.Option(20, help="rows to print")) -> None:
    """The reading worklist (gold mart_ecg_worklist in the serving database): unreported recordings,
    most urgent first."""
    _print_serving_query(
        "远程心电阅片工作列表 (most urgent first)", ("阅片中心", "#", "申请号", "申请机构", "申请时间", "状态", "优先级", "提示"),
        "SELECT reading_org_name, worklist_rank, request_id, org_name, requested_at, status, priority, flag_reasons "
        "FROM mart_ecg_worklist WHERE status IN ('待阅片', '需重新采集') "
        "ORDER BY reading_org_name, worklist_rank LIMIT ?", [limit])


def _print_serving_query(title: str, headers: tuple[str, ...], sql: str, params: list) -> None:
    """Run ``sql`` on the serving database (read-only) and print its rows as a table."""
    import duckdb

    con = duckdb.connect(str(pipeline.paths()["serving_db"]), read_only=True)
    rows = con.execute(sql, params).fetchall()
    con.close()
    t = Table(title=title)
    for c in headers:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


@ecg_app.command("evaluate")
def ecg_evaluate(directory: Path = typer.Argument(..., exists=True, file_okay=False,
                                                  help="folder searched for annotated WFDB records"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON only")) -> None:
    """R-peak detection exactly as the pipeline runs it, against the reference annotations
    (MIT-BIH .atr beats, LUDB N marks) of every record in DIRECTORY: TP, FN, FP, Se %, PPV %."""
    from spark_jobs.ecg.evaluate import evaluate_dir

    result = evaluate_dir(directory)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    t = Table(title=f"R-peak detection vs reference annotations ({directory})")
    for c in ("record", "reference", "TP", "FN", "FP", "Se %", "PPV %"):
        t.add_column(c)
    for r in [*result["records"], result["total"]]:
        name = str(r["record"]).removeprefix(str(directory)).lstrip("/")
        t.add_row(name, str(r.get("reference", "")), str(r["tp"]), str(r["fn"]), str(r["fp"]),
                  f"{r['sensitivity']:.3f}" if r["sensitivity"] is not None else "—",
                  f"{r['ppv']:.3f}" if r["ppv"] is not None else "—")
    console.print(t)


imaging_app = typer.Typer(no_args_is_help=True, help="Imaging pre-processing (spark_jobs/imaging).")
app.add_typer(imaging_app, name="imaging")


@imaging_app.command("process")
def imaging_process() -> None:
    """Catalogue every DICOM file landed in bronze and not parsed yet (silver.imaging_instances,
    series, studies, thumbnails; bad files to quarantine.imaging_files)."""
    _print(pipeline.process_imaging())


@imaging_app.command("inspect")
def imaging_inspect(directory: Path = typer.Argument(..., exists=True, file_okay=False,
                                                     help="folder whose files are inspected (recursively)"),
                    as_json: bool = typer.Option(False, "--json", help="print JSON only")) -> None:
    """The pipeline's parsing, de-identification and thumbnail code on every file in DIRECTORY:
    status (ok / repaired / quarantined), reason, modality, frames, thumbnail, surviving identifiers."""
    from spark_jobs.imaging.inspect import inspect_dir

    result = inspect_dir(directory, get_settings().deid_key)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    t = Table(title=f"DICOM files in {directory}")
    for c in ("file", "status", "reason", "modality", "frames", "thumbnail", "burned-in risk", "surviving identifiers"):
        t.add_column(c)
    for r in result["files"]:
        t.add_row(str(r["file"]).removeprefix(str(directory)).lstrip("/"), r["status"], r["reason"] or "",
                  r["modality"] or "", str(r["frames"] or ""), "yes" if r["thumbnail"] else (r["thumbnail_reason"] or "no"),
                  "" if r["burned_in_risk"] is None else str(r["burned_in_risk"]),
                  ", ".join(r["surviving_identifiers"]))
    console.print(t)
    console.print(result["totals"])


@imaging_app.command("worklist")
def imaging_worklist(limit: int = typer.Option(20, help="rows to print")) -> None:
    """The imaging reading worklist (gold mart_imaging_worklist in the serving database):
    unreported studies, SLA breaches first, then the oldest."""
    _print_serving_query(
        "远程影像阅片工作列表", ("阅片中心", "#", "申请号", "申请机构", "检查类型", "申请时间", "状态", "时限(小时)", "超时"),
        "SELECT reading_org_name, worklist_rank, request_id, org_name, modality, requested_at, status, "
        "sla_hours, sla_breached FROM mart_imaging_worklist WHERE status IN ('待阅片', '未收到影像') "
        "ORDER BY reading_org_name, worklist_rank LIMIT ?", [limit])


empi_app = typer.Typer(no_args_is_help=True, help="The resident master index (spark_jobs/empi).")
app.add_typer(empi_app, name="empi")


@empi_app.command("evaluate")
def empi_evaluate() -> None:
    """Pairwise precision and recall of silver.person_xref against the simulator's ground truth of
    which records are the same person (overall, and for the probabilistic part alone)."""
    result = pipeline.evaluate_empi()
    t = Table(title="EMPI: same-person record pairs vs the simulator's ground truth")
    for c in ("pairs", "true", "linked", "correct", "precision", "recall"):
        t.add_column(c)
    for label, prefix in (("all", ""), ("without a shared valid ID-card number", "hard_")):
        t.add_row(label, str(result[f"{prefix}true_pairs"]), str(result[f"{prefix}predicted_pairs"]),
                  str(result[f"{prefix}correct_pairs"]), f"{result[f'{prefix}precision']:.4f}",
                  f"{result[f'{prefix}recall']:.4f}")
    console.print(t)
    console.print(f"{result['records']:,} records compared")


quality_app = typer.Typer(no_args_is_help=True, help="Data quality (spark_jobs/quality).")
app.add_typer(quality_app, name="quality")


@quality_app.command("flags")
def quality_flags() -> None:
    """Run the record-authenticity, plausibility and timeliness checks (silver.record_flags)."""
    _print(pipeline.flag_records())


@quality_app.command("report")
def quality_report(month: str = typer.Option(None, help="scorecard month YYYY-MM (default: the latest)"),
                   worst: int = typer.Option(15, help="scorecard rows to print, worst score first")) -> None:
    """Reconciliation across layers (per bronze table: rows read, quarantined, superseded, in
    bronze, deleted at the source, in silver; 'unaccounted' must be 0), the data-quality
    scorecard per institution, tables held by a failed critical expectation, and where the Data
    Docs are."""
    rows = pipeline.reconcile()
    t = Table(title="Reconciliation: where every row a source sent went")
    cols = ("bronze_table", "read", "quarantined_on_ingest", "superseded", "unchanged", "in_bronze",
            "deleted_at_source", "in_silver", "quarantined_on_conformance", "unaccounted")
    for c in cols:
        t.add_column(c.replace("_", " "))
    for r in rows:
        t.add_row(*[f"{r[c]:,}" if isinstance(r[c], int) else r[c] for c in cols])
    console.print(t)
    lost = sum(r["unaccounted"] for r in rows)
    console.print(f"{len(rows)} tables; unaccounted rows: {lost}")
    _print_scorecard(month, worst)
    held = pipeline.held()
    console.print(f"held tables (a failed critical expectation): {', '.join(sorted(held)) if held else 'none'}")
    docs = pipeline.paths()["data_docs"]
    console.print(f"Data Docs: {docs.as_uri() if docs.is_file() else f'{docs} (not built yet: lakehouse validate)'}")


@quality_app.command("scorecard")
def quality_scorecard(month: str = typer.Option(None, help="month YYYY-MM (default: the latest)"),
                      worst: int = typer.Option(0, help="rows to print, worst score first (0: all)")) -> None:
    """The data-quality scorecard per institution and month (silver.dq_scorecard)."""
    _print_scorecard(month, worst)


def _print_scorecard(month: str | None, worst: int) -> None:
    rows = pipeline.scorecard()
    if not rows:
        console.print("no scorecard yet: run the pipeline (lakehouse quality flags, then score_quality)")
        return
    month = month or max(r["month"] for r in rows if r["month"] != "unknown")
    rows = [r for r in rows if r["month"] == month]
    t = Table(title=f"Data-quality scorecard {month} (数据质量评分), worst first: {len(rows)} institutions")
    for c in ("institution", "records", "completeness", "timeliness", "conformance", "authenticity",
              "authenticity flags", "score"):
        t.add_column(c)

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    for r in rows[:worst or None]:
        t.add_row(f"{r['org_name'] or ''} {r['org_code']}", f"{r['records']:,}", pct(r["completeness"]),
                  pct(r["timeliness"]), pct(r["conformance"]), pct(r["authenticity"]),
                  str(r["authenticity_flags"]), f"{r['score']:.1f}")
    console.print(t)


@quality_app.command("evaluate")
def quality_evaluate() -> None:
    """Precision and recall of every record flag against the simulator's injected defects."""
    t = Table(title="Record flags vs the simulator's injected defects")
    for c in ("defect", "flag", "defects", "flags", "caught", "precision", "recall"):
        t.add_column(c)
    for r in pipeline.evaluate_flags():
        t.add_row(r["defect"], r["flag"], str(r["defects"]), str(r["flags"]), str(r["caught"]),
                  f"{r['precision']:.3f}", f"{r['recall']:.3f}")
    console.print(t)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
