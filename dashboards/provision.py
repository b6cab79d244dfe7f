"""Provision Superset with the dashboards in `dashboards/bundle/` (idempotent).

    .venv-bi/bin/python dashboards/provision.py            # provision, print where to look
    .venv-bi/bin/python dashboards/provision.py --start    # ... then serve in the background
                                                           # (what infra/superset/start.sh runs)

Runs in the Superset environment only (`.venv-bi`); it never imports the pipeline packages.
Steps: secret key and admin password (generated once if not given) -> render the bundle with the
real SERVING_DB_URL into a zip -> `superset db upgrade` -> `superset init` -> admin user -> import
the zip, overwriting by uuid. A second run changes nothing (same rows, same ids); a changed bundle
or SERVING_DB_URL is applied in place.

| variable                | meaning                                   | default                                  |
|-------------------------|-------------------------------------------|------------------------------------------|
| JL_HOME                 | folder for everything the platform writes | <repo>/var                               |
| SERVING_DB_URL          | serving database the dashboards read      | duckdb:///$JL_HOME/serving/jiceng.duckdb |
| SERVING_DB_SCHEMA       | schema of the marts when serving is PG    | public                                   |
| SUPERSET_SECRET_KEY     | Superset's secret key                     | generated: $JL_HOME/superset/secret_key  |
| SUPERSET_ADMIN_PASSWORD | password of the `admin` login             | generated: $JL_HOME/superset/admin_password |
| SUPERSET_METADATA_URL   | Superset's metadata database              | sqlite:///$JL_HOME/superset/superset.db  |
| SUPERSET_HOST, _PORT    | where `--start` serves                    | 127.0.0.1, 8088                          |

The admin password (from the variable or the file) is the source of truth: provisioning creates
the user with it, or resets the user's password to it if they differ. Generated secrets are
written with mode 600 and never leave JL_HOME.

Why not plain `superset import-dashboards`: in Superset 6.1 it overwrites only the dashboard and
keeps existing databases, datasets and charts as they are, so a changed SERVING_DB_URL or chart
would never reach Superset. The bundle is imported with Superset's asset importer instead
(`ImportAssetsCommand`, what `POST /api/v1/assets/import/` runs), which overwrites every object by
uuid; the zip it reads is the same one `superset import-dashboards -p` accepts.
"""
from __future__ import annotations

import argparse
import io
import os
import secrets
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE_DIR = REPO_ROOT / "dashboards" / "bundle"
CONFIG_PATH = REPO_ROOT / "infra" / "superset" / "superset_config.py"
BIN_DIR = Path(sys.executable).parent  # the Superset environment's bin/
BUNDLE_ROOT = "jiceng_superset_bundle"  # the zip's one root folder
ADMIN_USERNAME = "admin"
URL_PLACEHOLDER = "{{SERVING_DB_URL}}"


class ProvisionError(RuntimeError):
    """A step failed; the message says which and why."""


# --- settings -----------------------------------------------------------------------------------

def jl_home(environ: dict[str, str]) -> Path:
    return Path(environ.get("JL_HOME") or REPO_ROOT / "var").resolve()


def serving_db_url(environ: dict[str, str], home: Path) -> str:
    """SERVING_DB_URL with a DuckDB path made absolute (Superset runs from another folder)."""
    url = environ.get("SERVING_DB_URL") or f"duckdb:///{home / 'serving' / 'jiceng.duckdb'}"
    prefix = "duckdb:///"
    if url.startswith(prefix):
        path, sep, query = url[len(prefix):].partition("?")
        if not path or path == ":memory:":
            raise ProvisionError(f"SERVING_DB_URL must name a DuckDB file, got {url!r}")
        url = f"{prefix}{Path(path).expanduser().resolve()}{sep}{query}"
    elif not url.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise ProvisionError(
            f"SERVING_DB_URL must be duckdb:///<file> or postgresql://..., got {url.split(':')[0]}:..."
        )
    return url


def without_password(url: str) -> str:
    """``url`` fit for printing (a PostgreSQL URL may carry a password)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"
    return url


def read_or_create_secret(path: Path, nbytes: int) -> str:
    """The secret stored in ``path``, generated once (mode 600) if the file does not exist."""
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


def superset_environment(environ: dict[str, str]) -> dict[str, str]:
    """The variables Superset runs with: config path, JL_HOME, secret key."""
    home = jl_home(environ)
    state = home / "superset"
    env = dict(environ)
    env["JL_HOME"] = str(home)
    env["SUPERSET_CONFIG_PATH"] = str(CONFIG_PATH)
    env["SUPERSET_HOME"] = str(state)
    if not env.get("SUPERSET_SECRET_KEY"):
        env["SUPERSET_SECRET_KEY"] = read_or_create_secret(state / "secret_key", 48)
    return env


# --- bundle -------------------------------------------------------------------------------------

def load_bundle(bundle_dir: Path = BUNDLE_DIR) -> dict[str, dict[str, Any]]:
    """All YAML files of the bundle, by path relative to the bundle folder."""
    files = {
        str(p.relative_to(bundle_dir)): yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted(bundle_dir.rglob("*.yaml"))
    }
    if "metadata.yaml" not in files:
        raise ProvisionError(f"{bundle_dir} has no metadata.yaml")
    return files


def render_bundle(files: dict[str, dict[str, Any]], url: str,
                  pg_schema: str = "public") -> dict[str, dict[str, Any]]:
    """The bundle with the database URI filled in (and adapted when serving is PostgreSQL)."""
    rendered = {name: dict(cfg) for name, cfg in files.items()}
    for name, cfg in rendered.items():
        if name.startswith("databases/") and cfg.get("sqlalchemy_uri") == URL_PLACEHOLDER:
            cfg["sqlalchemy_uri"] = url
            if url.startswith("postgresql"):
                # The bundle is written for the embedded DuckDB file; drop its driver options.
                extra = dict(cfg.get("extra") or {})
                extra.pop("engine_params", None)
                cfg["extra"] = extra
                cfg["database_name"] = cfg["database_name"].replace("(DuckDB)", "(PostgreSQL)")
    if url.startswith("postgresql"):
        for name, cfg in rendered.items():
            if name.startswith("datasets/") and cfg.get("schema") == "main":
                cfg["schema"] = pg_schema
    leftovers = [n for n, c in rendered.items() if URL_PLACEHOLDER in yaml.safe_dump(c)]
    if leftovers:
        raise ProvisionError(f"unfilled {URL_PLACEHOLDER} in {leftovers}")
    return rendered


def write_bundle_zip(files: dict[str, dict[str, Any]], path: Path) -> Path:
    """Write the bundle as a Superset import zip with one root folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, cfg in sorted(files.items()):
            text = yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)
            zf.writestr(f"{BUNDLE_ROOT}/{name}", text)
    path.write_bytes(buf.getvalue())
    return path


def dashboard_slugs(files: dict[str, dict[str, Any]]) -> list[str]:
    return [c["slug"] for n, c in files.items() if n.startswith("dashboards/") and c.get("slug")]


# --- Superset -----------------------------------------------------------------------------------

class Superset:
    """One Superset app in this process; runs the `superset` CLI commands against it.

    Each `superset ...` subprocess would spend ~5 s importing and building the app; running the
    same click commands in-process on one app does the same work once.
    """

    def __init__(self, env: dict[str, str]):
        os.environ.update(env)  # read by superset.config at import time
        from flask.cli import ScriptInfo

        from superset.app import create_app

        self.app = create_app()
        self._info = ScriptInfo(create_app=lambda: self.app)

    def cli(self, *args: str) -> None:
        from superset.cli.main import superset as superset_cli

        try:
            superset_cli.main(args=list(args), prog_name="superset", obj=self._info,
                              standalone_mode=False)
        except SystemExit as exc:  # commands report failure with sys.exit(1)
            if exc.code not in (0, None):
                raise ProvisionError(f"`superset {' '.join(args[:2])}` failed (see log above)")

    def ensure_admin(self, password: str) -> str:
        """Create the admin login, or reset its password to ``password``; returns what it did."""
        from werkzeug.security import check_password_hash

        from superset import security_manager

        with self.app.app_context():
            user = security_manager.find_user(username=ADMIN_USERNAME)
            if user is None:
                action = "created"
            elif not check_password_hash(user.password or "", password):
                action = "password reset"
            else:
                return "unchanged"
        if action == "created":
            self.cli("fab", "create-admin", "--username", ADMIN_USERNAME, "--firstname", "Jiceng",
                     "--lastname", "Admin", "--email", "admin@jiceng.local",
                     "--password", password)
        else:
            self.cli("fab", "reset-password", "--username", ADMIN_USERNAME,
                     "--password", password)
        with self.app.app_context():
            if security_manager.find_user(username=ADMIN_USERNAME) is None:
                raise ProvisionError("the admin user could not be created (see log above)")
        return action

    def import_bundle(self, zip_path: Path) -> None:
        """Import (create or overwrite by uuid) every object in the zip, owned by admin."""
        from superset import security_manager
        from superset.commands.exceptions import CommandInvalidError
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.utils.core import override_user

        with self.app.app_context():
            with zipfile.ZipFile(zip_path) as zf:
                contents = get_contents_from_bundle(zf)
            admin = security_manager.find_user(username=ADMIN_USERNAME)
            try:
                with override_user(admin):
                    ImportAssetsCommand(contents).run()
            except Exception as exc:  # ImportFailedError wraps the cause
                cause: BaseException = exc
                while cause.__cause__ is not None and not isinstance(cause, CommandInvalidError):
                    cause = cause.__cause__
                if isinstance(cause, CommandInvalidError):
                    detail = cause.normalized_messages()
                    raise ProvisionError(f"the bundle is invalid: {detail}") from exc
                raise ProvisionError(f"importing {zip_path} failed: {cause}") from exc


def provision(environ: dict[str, str]) -> dict[str, Any]:
    """Run every provisioning step; returns what the summary prints."""
    env = superset_environment(environ)
    home = Path(env["JL_HOME"])
    state = home / "superset"
    url = serving_db_url(env, home)
    if env.get("SUPERSET_ADMIN_PASSWORD"):
        password, password_from = env["SUPERSET_ADMIN_PASSWORD"], "$SUPERSET_ADMIN_PASSWORD"
    else:
        password_file = state / "admin_password"
        password, password_from = read_or_create_secret(password_file, 18), str(password_file)

    step(f"rendering {BUNDLE_DIR.relative_to(REPO_ROOT)} for {without_password(url)}")
    files = render_bundle(load_bundle(), url, env.get("SERVING_DB_SCHEMA") or "public")
    zip_path = write_bundle_zip(files, state / "bundle.zip")

    step("starting Superset in-process")
    superset = Superset(env)
    step("superset db upgrade")
    superset.cli("db", "upgrade")
    step("superset init")
    superset.cli("init")
    step("admin user")
    admin = superset.ensure_admin(password)
    step(f"importing {zip_path}")
    superset.import_bundle(zip_path)

    warnings = []
    if url.startswith("duckdb:///"):
        db_file = Path(url[len("duckdb:///"):].partition("?")[0])
        if not db_file.exists():
            warnings.append(f"serving database {db_file} does not exist yet: dashboards stay empty "
                            "until the pipeline exports it (make demo)")
    return {
        "env": env, "url": url, "admin": admin, "password_from": password_from,
        "slugs": dashboard_slugs(files), "warnings": warnings,
    }


# --- server -------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"gunicorn" in cmdline.read_bytes()


def start_server(env: dict[str, str], host: str, port: int, timeout_s: float = 120) -> int:
    """Serve Superset with gunicorn in the background; returns its pid (pid file + log in JL_HOME)."""
    state = Path(env["JL_HOME"]) / "superset"
    pid_file, log_file = state / "superset.pid", state / "superset.log"
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _alive(pid):
            print(f"Superset already running (pid {pid}); stop it with: kill {pid}")
            return pid
        pid_file.unlink()
    cmd = [
        str(BIN_DIR / "gunicorn"), "--bind", f"{host}:{port}",
        "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "120",
        "--limit-request-line", "0", "--limit-request-field_size", "0",
        "superset.app:create_app()",
    ]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=state)
    pid_file.write_text(f"{proc.pid}\n")
    health = f"http://{host}:{port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            tail = log_file.read_text(errors="replace").splitlines()[-15:]
            raise ProvisionError("Superset exited while starting:\n  " + "\n  ".join(tail))
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200:
                    return proc.pid
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)
    raise ProvisionError(f"Superset did not answer {health} within {timeout_s:.0f} s; see {log_file}")


# --- CLI ----------------------------------------------------------------------------------------

_current_step = "reading settings"


def step(msg: str) -> None:
    global _current_step
    _current_step = msg
    print(f"[provision] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", action="store_true",
                        help="after provisioning, serve Superset in the background")
    args = parser.parse_args(argv)
    host = os.environ.get("SUPERSET_HOST", "127.0.0.1")
    port = int(os.environ.get("SUPERSET_PORT", "8088"))
    try:
        result = provision(dict(os.environ))
        if args.start:
            step(f"starting the server on {host}:{port}")
            pid = start_server(result["env"], host, port)
        else:
            pid = None
    except ProvisionError as exc:
        print(f"[provision] FAILED ({_current_step}): {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a Superset step broke: keep its traceback, end with the reason
        traceback.print_exc()
        print(f"[provision] FAILED ({_current_step}): {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    state = Path(result["env"]["JL_HOME"]) / "superset"
    base = f"http://{host}:{port}"
    print("\nSuperset is provisioned.")
    for slug in result["slugs"]:
        print(f"  dashboard : {base}/superset/dashboard/{slug}/")
    print(f"  login     : {ADMIN_USERNAME} (password in {result['password_from']}; "
          f"user {result['admin']})")
    print(f"  data      : {without_password(result['url'])}")
    if pid:
        print(f"  server    : pid {pid}, log {state / 'superset.log'}, stop with: kill {pid}")
    else:
        print("  serve     : infra/superset/start.sh")
    for warning in result["warnings"]:
        print(f"  WARNING   : {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
