"""Superset dashboards as code: the bundle provisions into a fresh Superset and serves real rows.

Superset lives in its own environment (`.venv-bi`, SQLAlchemy < 2), so this test drives it the way
a user does: `dashboards/provision.py`, then `infra/superset/start.sh` (which provisions again and
serves on a free loopback port), then Superset's REST API. Between the two runs the serving DuckDB
file moves, as when JL_HOME changes: the second import must update the database in place, and add
nothing.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
BI_PYTHON = REPO / ".venv-bi" / "bin" / "python"
PROVISION = REPO / "dashboards" / "provision.py"
START = REPO / "infra" / "superset" / "start.sh"

DASHBOARD_TITLE = "高血压患者规范管理 — 基层绩效考核"
DATABASE_NAME = "基层卫生服务库 (DuckDB)"

# (year, level, org_code, org_name, county_code, county_name, numerator, denominator)
MART_ROWS = [
    (2023, "township", "130102101", "城关镇", "130102", "长安区", 300, 500),
    (2023, "township", "130102102", "东关镇", "130102", "长安区", 150, 300),
    (2023, "county", "130102", "长安区", "130102", "长安区", 450, 800),
    (2024, "township", "130102101", "城关镇", "130102", "长安区", 360, 500),
    (2024, "township", "130102102", "东关镇", "130102", "长安区", 120, 300),
    (2024, "township", "130104201", "振头镇", "130104", "桥西区", 270, 300),
    (2024, "township", "130104202", "留营乡", "130104", "桥西区", 198, 330),
    (2024, "county", "130102", "长安区", "130102", "长安区", 480, 800),
    (2024, "county", "130104", "桥西区", "130104", "桥西区", 468, 630),
]
TARGET = 0.60

# Superset tables a user's objects live in; a re-import must leave every count and id alone.
ASSET_TABLES = ["dbs", "tables", "table_columns", "sql_metrics", "slices", "dashboards",
                "dashboard_slices", "ab_user", "dashboard_user", "slice_user", "sqlatable_user"]


def write_serving_db(path: Path, rows: list[tuple] = MART_ROWS) -> None:
    """A serving DuckDB file holding main.mart_hypertension_management, as the pipeline writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("""
        create table main.mart_hypertension_management (
            period_year integer, org_level varchar, org_code varchar, org_name varchar,
            county_code varchar, county_name varchar, numerator bigint, denominator bigint,
            rate double, target double, score double, weight double, indicator_id varchar,
            indicator_name varchar, catalog_version varchar)
    """)
    for year, level, org_code, org_name, county_code, county_name, num, den in rows:
        rate = num / den
        con.execute(
            "insert into main.mart_hypertension_management values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [year, level, org_code, org_name, county_code, county_name, num, den, rate, TARGET,
             round(10 * min(rate / TARGET, 1.0), 2), 10.0, "htn_standard_mgmt_rate",
             "高血压患者规范管理率", "2024.1"],
        )
    con.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(metadata_db: Path) -> dict[str, object]:
    con = sqlite3.connect(metadata_db)
    try:
        snap: dict[str, object] = {t: con.execute(f"select count(*) from {t}").fetchone()[0]
                                   for t in ASSET_TABLES}
        for table in ("dbs", "tables", "slices", "dashboards"):
            snap[f"{table}.ids"] = sorted(con.execute(f"select uuid, id from {table}").fetchall())
        return snap
    finally:
        con.close()


@dataclass
class Site:
    home: Path
    metadata_db: Path
    serving_url: str
    base_url: str
    first_run: subprocess.CompletedProcess
    second_run: subprocess.CompletedProcess
    before: dict[str, object]
    after: dict[str, object]

    def query(self, sql: str, *params: object) -> list[tuple]:
        con = sqlite3.connect(self.metadata_db)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd[-1]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    assert BI_PYTHON.exists(), "the Superset environment .venv-bi is missing: run infra/setup.sh"
    home = tmp_path_factory.mktemp("jl_home")
    old_db, serving_db = home / "old" / "jiceng.duckdb", home / "serving" / "jiceng.duckdb"
    write_serving_db(old_db)
    metadata_db = home / "metadata" / "superset.db"
    metadata_db.parent.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUPERSET_", "SERVING_DB", "JL_"))}
    env.update(JL_HOME=str(home), SERVING_DB_URL=f"duckdb:///{old_db}",
               SUPERSET_METADATA_URL=f"sqlite:///{metadata_db}?check_same_thread=false",
               SUPERSET_PORT=str(port))

    first = run([str(BI_PYTHON), str(PROVISION)], env)
    before = snapshot(metadata_db)

    serving_db.parent.mkdir()
    old_db.rename(serving_db)
    env["SERVING_DB_URL"] = f"duckdb:///{serving_db}"
    pid_file = home / "superset" / "superset.pid"
    try:
        second = run([str(START)], env)
        yield Site(home=home, metadata_db=metadata_db, serving_url=env["SERVING_DB_URL"],
                   base_url=f"http://127.0.0.1:{port}", first_run=first, second_run=second,
                   before=before, after=snapshot(metadata_db))
    finally:
        stop_server(pid_file)


def stop_server(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGINT)  # gunicorn: quick shutdown; start.sh gives it its own session
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat")
        if not state.exists() or state.read_text().split()[2] == "Z":
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


def api(site: Site, path: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(site.base_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{path}: HTTP {exc.code} {exc.read()[:2000]!r}") from None


@pytest.fixture(scope="module")
def token(site: Site) -> str:
    password = (site.home / "superset" / "admin_password").read_text().strip()
    login = {"username": "admin", "password": password, "provider": "db", "refresh": False}
    return api(site, "/api/v1/security/login", body=login)["access_token"]


def chart_rows(site: Site, token: str) -> dict[str, list[dict]]:
    charts = api(site, "/api/v1/chart/?q=(page_size:100)", token)["result"]
    return {c["slice_name"]: api(site, f"/api/v1/chart/{c['id']}/data/", token)["result"][0]["data"]
            for c in charts}


def test_dashboard_chart_dataset_and_database_exist_with_chinese_titles(site):
    assert site.query("select dashboard_title, slug, published from dashboards") == [
        (DASHBOARD_TITLE, "htn-management", 1)]
    assert {name for (name,) in site.query("select slice_name from slices")} >= {
        "各乡镇高血压患者规范管理率（最新年度）", "乡镇高血压患者规范管理考核明细"}
    assert site.query("select count(*) from dashboard_slices") == [(4,)]
    assert site.query("select database_name from dbs") == [(DATABASE_NAME,)]
    [(dataset_id, dataset_name, dataset_sql)] = site.query("select id, table_name, sql from tables")
    assert "高血压" in dataset_name and "mart_hypertension_management" in dataset_sql
    labels = dict(site.query("select column_name, verbose_name from table_columns"))
    assert labels["org_name"] == "乡镇/区县" and labels["rate"] == "规范管理率"
    assert labels["numerator"].startswith("分子") and labels["denominator"].startswith("分母")
    assert all(label and any("\u4e00" <= ch <= "\u9fff" for ch in label)
               for label in labels.values()), labels
    metrics = dict(site.query("select metric_name, verbose_name from sql_metrics"))
    assert metrics["htn_mgmt_rate"] == "规范管理率"


def test_database_points_at_the_serving_file_and_never_downloads_extensions(site):
    [(uri, extra)] = site.query("select sqlalchemy_uri, extra from dbs")
    assert uri == site.serving_url  # moved by the second run: updated in place
    connect_args = json.loads(extra)["engine_params"]["connect_args"]
    assert connect_args["read_only"] is True
    assert connect_args["config"]["autoinstall_known_extensions"] is False


def test_second_provisioning_duplicates_nothing(site):
    assert site.after == site.before
    assert "user unchanged" in site.second_run.stdout
    assert "user created" in site.first_run.stdout


def test_generated_secrets_are_private_and_outside_the_repository(site):
    for name in ("secret_key", "admin_password"):
        path = site.home / "superset" / name
        assert path.stat().st_mode & 0o777 == 0o600, name
    assert "admin_password" in site.first_run.stdout  # the summary says where the login is
    assert "/superset/dashboard/htn-management/" in site.first_run.stdout


def test_charts_serve_the_duckdb_rows_through_superset(site, token):
    data = chart_rows(site, token)

    latest = max(r[0] for r in MART_ROWS)
    townships = {r[3]: r[6] / r[7] for r in MART_ROWS if r[0] == latest and r[1] == "township"}
    bars = data["各乡镇高血压患者规范管理率（最新年度）"]
    assert [b["org_name"] for b in bars] == sorted(townships, key=townships.get, reverse=True)
    assert {b["org_name"]: b["htn_mgmt_rate"] for b in bars} == pytest.approx(townships)

    counties = [r for r in MART_ROWS if r[0] == latest and r[1] == "county"]
    [city] = data["高血压患者规范管理率（最新年度）"]
    assert city["htn_mgmt_rate"] == pytest.approx(
        sum(r[6] for r in counties) / sum(r[7] for r in counties))

    detail = data["乡镇高血压患者规范管理考核明细"]
    assert len(detail) == sum(1 for r in MART_ROWS if r[1] == "township")  # every year
    assert {"城关镇", "留营乡"} <= {row["org_name"] for row in detail}
    assert detail[0]["period_year"] == latest
    assert {"numerator", "denominator", "rate", "target", "score"} <= set(detail[0])


def test_dashboard_lists_its_charts(site, token):
    dashboard = api(site, "/api/v1/dashboard/htn-management", token)["result"]
    assert dashboard["dashboard_title"] == DASHBOARD_TITLE
    charts = api(site, "/api/v1/dashboard/htn-management/charts", token)["result"]
    assert len(charts) == 4


def test_a_new_export_shows_without_restarting_superset(site, token):
    # The pipeline replaces the serving file atomically (sharing/serving.py); Superset opens it per
    # query, so the next request sees the new numbers. Runs last: it changes the site's data.
    serving_db = Path(site.serving_url.removeprefix("duckdb:///"))
    new_rows = [r if r[3] != "留营乡" else (*r[:6], 330, 330) for r in MART_ROWS]
    staged = serving_db.with_name(".next.duckdb")
    write_serving_db(staged, new_rows)
    os.replace(staged, serving_db)

    bars = chart_rows(site, token)["各乡镇高血压患者规范管理率（最新年度）"]
    assert bars[0] == {"org_name": "留营乡", "htn_mgmt_rate": pytest.approx(1.0)}


def test_superset_refuses_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERSET_")}
    env.update(JL_HOME=str(tmp_path),
               SUPERSET_CONFIG_PATH=str(REPO / "infra" / "superset" / "superset_config.py"))
    proc = subprocess.run([str(BI_PYTHON), "-c", "import superset.config"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "SUPERSET_SECRET_KEY is not set" in proc.stderr


# ---- the page a health-bureau analyst opens -------------------------------------------------

def _browser_page_text(site: Site, path: str, wait_for: list[str], timeout: float = 90.0,
                       screenshot: Path | None = None) -> str:
    """Log in through Superset's form, open ``path`` in headless Chromium (Debian's package,
    driven over the DevTools protocol), wait until every string of ``wait_for`` is on the page,
    and return the page's visible text."""
    import asyncio
    import base64
    import re
    import shutil

    import requests
    import websockets

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: infra/setup.sh installs it"
    session = requests.Session()
    form = session.get(site.base_url + "/login/").text
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
    password = (site.home / "superset" / "admin_password").read_text().strip()
    session.post(site.base_url + "/login/", data={"username": "admin", "password": password,
                                                  "csrf_token": csrf.group(1) if csrf else ""})
    cookies = [{"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": "/"} for c in session.cookies]
    assert cookies, "the login form gave no session cookie"

    port = free_port()
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={site.home / 'chromium'}", f"--remote-debugging-port={port}",
         "--window-size=1500,1300", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2))
                page = next(t for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
                time.sleep(0.3)

        async def drive() -> str:
            async with websockets.connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
                ids = iter(range(1, 10**6))

                async def call(method: str, **params):
                    mid = next(ids)
                    await ws.send(json.dumps({"id": mid, "method": method, "params": params}))
                    while True:
                        msg = json.loads(await ws.recv())
                        if msg.get("id") == mid:
                            return msg.get("result", {})

                await call("Network.enable")
                for cookie in cookies:
                    await call("Network.setCookie", **cookie)
                await call("Emulation.setDeviceMetricsOverride", width=1500, height=1300,
                           deviceScaleFactor=1, mobile=False)
                await call("Page.navigate", url=site.base_url + path)
                text, end = "", time.monotonic() + timeout
                while time.monotonic() < end:
                    res = await call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                    text = res.get("result", {}).get("value", "") or ""
                    if all(w in text for w in wait_for):
                        break
                    await asyncio.sleep(1)
                await asyncio.sleep(2)  # let the charts finish drawing before the picture
                if screenshot is not None:
                    shot = await call("Page.captureScreenshot", format="png")
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                res = await call("Runtime.evaluate", expression="document.body.innerText")
                return res.get("result", {}).get("value", "") or text

        return asyncio.run(drive())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_renders_in_a_browser_with_chinese_labels_and_the_data(site: Site):
    shot = site.home / "dashboard.png"
    text = _browser_page_text(site, "/superset/dashboard/htn-management/",
                              wait_for=[DASHBOARD_TITLE, "各乡镇高血压患者规范管理率", "振头镇"], screenshot=shot)
    assert DASHBOARD_TITLE in text
    assert "各区县高血压患者规范管理率" in text and "各乡镇高血压患者规范管理率" in text
    # townships of the fixture's latest year are drawn, with the county filter in Chinese
    for township in ("城关镇", "东关镇", "振头镇", "留营乡"):
        assert township in text, f"{township} is not on the dashboard"
    assert "区县" in text
    assert not any(word in text for word in ("Unexpected error", "出错", "错误")), text[:2000]
    assert shot.stat().st_size > 20_000, "the screenshot is (nearly) blank"
