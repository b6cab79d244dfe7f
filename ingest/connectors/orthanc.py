"""PACS connector: the regional PACS (Orthanc) → landing copy + a file manifest in bronze
(``bronze.orthanc__files``).

Orthanc keeps a journal of what happened to its index, the *changes feed*:
``GET /changes?since=<seq>&limit=<n>`` answers ``{"Changes": [{"ChangeType", "Date", "ID", "Path",
"ResourceType", "Seq"}, ...], "Done": bool, "Last": <seq>}``, in ``Seq`` order. Every instance it
stores appends a ``NewInstance`` change (its parent series / study / patient add ``New*`` and, a
while later, ``Stable*`` changes, which this connector skips). The connector reads the feed from
its high-water mark (the ``Seq`` of the last ``NewInstance`` change it loaded, in
``ops.watermarks`` as source ``orthanc``, entity ``files``), downloads each new instance (``GET /instances/{id}/file``, the
DICOM file exactly as stored), copies it into the landing zone
(``<JL_HOME>/landing/orthanc/<day>/<orthanc_study_id>/<orthanc_instance_id>.dcm``, where ``day`` is
the day Orthanc received it) and writes one row per instance with the same columns and the same
light checks as ``bronze.dicom__files`` (:func:`ingest.connectors.media_files.check_dicom_image`),
plus ``orthanc_instance_id``, ``orthanc_study_id`` and ``change_seq``. ``org_code`` comes from the
header's Issuer of Patient ID (there is no delivery folder to take it from).

A file that fails a check goes to ``quarantine.orthanc__files`` with the reason codes of the DICOM
file source (``not_dicom``, ``unreadable_header``, ``truncated_dicom``), plus
``instance_not_found``: the feed announced an instance that was deleted from the PACS before it
was pulled.

Bronze key: ``(orthanc_instance_id, sha256)``. Orthanc's instance id is a hash of the patient,
study, series and SOP Instance UIDs, so a modality that resends an instance with new content
(Orthanc's ``OverwriteInstances``) gives a new row, as a re-delivered file does in the file source.

Crash safety, as for the file sources: the changes are read in slices of at most
``max_instances`` new instances; each slice is one batch, whose id hashes the watermark it
started from and the ``Seq`` of its last new instance; bronze, quarantine, the batch record and ``ops.landed_files`` are MERGEs, and the
watermark moves last. A crash before it makes the rerun read the same changes and download the
same files again, which changes nothing; a rerun with nothing new in the feed writes nothing.
A watermark ahead of the feed's last change means the PACS index was rebuilt: the run stops with
an error rather than guessing what was already loaded.

Not configured (``JL_ORTHANC_URL`` unset): the source is not ingested, and :func:`ingest` returns
an empty list.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from ingest.connectors import common
from ingest.connectors.media_files import DICOM_SCHEMA, check_dicom_image, rows_frame
from lakehouse import landing, ops
from lakehouse.faults import maybe_fail

SOURCE = "orthanc"
ENTITY = "files"
KEYS = ("orthanc_instance_id", "sha256")
PAGE = 1000               # changes per request of the feed
MAX_INSTANCES = 2000      # new instances per batch
_EXTRA = "orthanc_instance_id STRING, orthanc_study_id STRING, change_seq BIGINT"
if not DICOM_SCHEMA.endswith(", __reason STRING"):
    raise ImportError("media_files.DICOM_SCHEMA no longer ends with __reason")
ORTHANC_SCHEMA = DICOM_SCHEMA.removesuffix(", __reason STRING") + f", {_EXTRA}, __reason STRING"

common.bronze_table(SOURCE, ENTITY, KEYS)
common.quarantine_table(SOURCE, ENTITY)


# ---- a small REST client (stdlib only) -------------------------------------------------------------

class OrthancError(RuntimeError):
    """An Orthanc REST call failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class OrthancClient:
    """The few Orthanc REST calls the platform makes. ``url`` is the server's base URL (e.g.
    ``http://127.0.0.1:58042``); ``user`` / ``password`` its HTTP basic-auth login, if any."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None, timeout: float = 60):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = ("Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()) if user else None

    @classmethod
    def from_settings(cls, settings) -> "OrthancClient":
        return cls(settings.orthanc_url, settings.orthanc_user, settings.orthanc_password)

    def request(self, method: str, path: str, *, params: dict | None = None, data: bytes | None = None,
                content_type: str | None = None) -> bytes:
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        req = urllib.request.Request(url, data=data, method=method)
        if self._auth:
            req.add_header("Authorization", self._auth)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise OrthancError(f"Orthanc {method} {path} 失败 (HTTP {exc.code}): {detail}", exc.code) from exc
        except urllib.error.URLError as exc:
            raise OrthancError(f"无法连接 PACS (Orthanc) {self.url}: {exc.reason}") from exc

    def get_json(self, path: str, **params):
        return json.loads(self.request("GET", path, params=params or None))

    def system(self) -> dict:
        return self.get_json("/system")

    def changes(self, since: int, limit: int = PAGE) -> dict:
        """One page of the changes feed after ``since``: ``{"Changes", "Done", "Last"}``."""
        return self.get_json("/changes", since=since, limit=limit)

    def instance_file(self, instance_id: str) -> bytes:
        """The DICOM file of an instance, as stored."""
        return self.request("GET", f"/instances/{instance_id}/file")

    def instance_study(self, instance_id: str) -> dict:
        """The parent study of an instance (``{"ID", "MainDicomTags", ...}``)."""
        return self.get_json(f"/instances/{instance_id}/study")

    def store(self, data: bytes) -> dict:
        """POST one DICOM file to ``/instances``: ``{"ID", "ParentStudy", ..., "Status"}``."""
        return json.loads(self.request("POST", "/instances", data=data, content_type="application/dicom"))

    def studies(self) -> list[str]:
        return self.get_json("/studies")


# ---- the feed -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NewInstance:
    seq: int
    instance_id: str
    received_day: str      # YYYY-MM-DD, Orthanc's clock


def _day(orthanc_date: str) -> str:
    return f"{orthanc_date[:4]}-{orthanc_date[4:6]}-{orthanc_date[6:8]}"


def read_changes(client: OrthancClient, since: int, *, until=None, max_instances: int = MAX_INSTANCES,
                 page: int = PAGE) -> tuple[list[NewInstance], int]:
    """The ``NewInstance`` changes after ``since`` received before day ``until`` (all with None),
    at most ``max_instances`` of them, and the slice's end: the ``Seq`` of the last of them
    (``since`` when none). An instance announced twice in the slice is listed once, at its last
    change.

    The slice ends at its last new instance, not at the last change read: the ``Stable*``
    changes Orthanc appends a minute after an upload then never make the same instances a
    different slice (and batch) when a crashed run is repeated."""
    stop = dt.date.fromisoformat(str(until)[:10]).strftime("%Y%m%d") if until is not None else None
    found: dict[str, NewInstance] = {}
    cursor = since

    def result():
        slice_ = sorted(found.values(), key=lambda c: c.seq)
        return slice_, (slice_[-1].seq if slice_ else since)

    while True:
        resp = client.changes(cursor, page)
        if cursor > int(resp.get("Last") or 0):
            raise RuntimeError(
                f"PACS 变更序号倒退: 水位线 {cursor} 大于 Orthanc 最新变更序号 {resp.get('Last')}，"
                "PACS 索引可能已重建；请核实后重置 ops.watermarks 中 orthanc/files 的水位线")
        for change in resp.get("Changes") or []:
            if stop is not None and change["Date"][:8] >= stop:
                return result()
            if change["ChangeType"] == "NewInstance":
                if len(found) >= max_instances and change["ID"] not in found:
                    return result()
                found.pop(change["ID"], None)
                found[change["ID"]] = NewInstance(int(change["Seq"]), change["ID"], _day(change["Date"]))
            cursor = int(change["Seq"])
        if resp.get("Done") or not resp.get("Changes"):
            return result()


# ---- one instance -----------------------------------------------------------------------------------

def _land_bytes(data: bytes, sha256: str, target: Path) -> Path:
    """Write ``data`` at ``target`` in the landing zone (temporary name, then rename); an existing
    copy with the same content is reused, a different one never overwritten."""
    if target.exists():
        if landing.sha256_of(target) == sha256:
            return target
        target = target.with_name(f"{target.stem}.{sha256[:12]}{target.suffix}")
        if target.exists():
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _issuer(path: Path) -> str | None:
    """Issuer of Patient ID: the code of the institution whose patient it is."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = pydicom.dcmread(path, force=True, specific_tags=["IssuerOfPatientID"]).get("IssuerOfPatientID")
        return (str(v).strip() or None) if v is not None else None
    except Exception:  # noqa: BLE001 - a malformed header is judged by the check, not here
        return None


def fetch_instance(client: OrthancClient, change: NewInstance, landing_root: Path) -> dict:
    """The bronze row of one announced instance: downloaded, landed and checked (never raises for
    a bad file; an instance gone from the PACS is a row with reason ``instance_not_found``)."""
    row: dict = {"orthanc_instance_id": change.instance_id, "change_seq": change.seq,
                 "delivery_day": change.received_day, "is_deleted": 0}
    try:
        study_id = client.instance_study(change.instance_id)["ID"]
        data = client.instance_file(change.instance_id)
    except OrthancError as exc:
        if exc.status == 404:
            return {**row, "__reason": "instance_not_found"}
        raise
    sha = hashlib.sha256(data).hexdigest()
    rel_path = f"{change.received_day}/{study_id}/{change.instance_id}.dcm"
    landed = _land_bytes(data, sha, Path(landing_root) / SOURCE / rel_path)
    info = check_dicom_image(landed)
    return {**row, "orthanc_study_id": study_id, "rel_path": rel_path, "sha256": sha, "size_bytes": len(data),
            "landing_path": str(landed), "org_code": _issuer(landed), **info}


# ---- the connector ---------------------------------------------------------------------------------

def _manifest_row(r: dict, batch: str) -> dict:
    reason = r.get("__reason")
    return {"source": SOURCE, "rel_path": r.get("rel_path") or f"{r['delivery_day']}/{r['orthanc_instance_id']}",
            "sha256": r.get("sha256") or "", "delivery_day": r["delivery_day"], "size_bytes": r.get("size_bytes"),
            "landing_path": r.get("landing_path"), "entity": ENTITY, "batch_id": batch, "rows_read": 1,
            "rows_loaded": 0 if reason else 1, "rows_quarantined": 1 if reason else 0,
            "status": common.STATUS_QUARANTINED if reason else common.STATUS_LOADED, "reason": reason}


def ingest(spark, settings, *, until=None, full: bool = False, client: OrthancClient | None = None,
           max_instances: int = MAX_INSTANCES) -> list[common.BatchResult]:
    """Load the instances the PACS received since the watermark (all of them with ``full``) and
    before day ``until``, one batch per slice of at most ``max_instances``; returns the batch
    results (empty when nothing is new, or when no PACS is configured)."""
    if client is None:
        if not settings.orthanc_url:
            return []
        client = OrthancClient.from_settings(settings)
    lake_root = settings.lake_root
    current = ops.get_watermark(spark, lake_root, SOURCE, ENTITY)
    since = 0 if full or current is None else int(current)
    results = []
    while True:
        started = dt.datetime.now()
        changes, cursor = read_changes(client, since, until=until, max_instances=max_instances)
        if not changes:
            return results   # nothing new (at most Stable* and other non-instance changes)
        rows = [fetch_instance(client, c, settings.landing_root) for c in changes]
        df = rows_frame(spark, rows, ORTHANC_SCHEMA)
        df = df.withColumn("_source_file", df.rel_path)
        batch = ops.batch_id(SOURCE, ENTITY, str(since), str(cursor))
        result = common.load_batch(spark, lake_root, df, source=SOURCE, entity=ENTITY, keys=KEYS, batch_id=batch,
                                   source_file=None, order_by=None, watermark_from=str(since),
                                   watermark_to_column=None, started=started)
        result.record = dataclasses.replace(result.record, watermark_to=str(cursor))
        result.watermark = str(cursor)
        results.append(result)
        common.record_ops(spark, lake_root, [result])
        landing.record_files(spark, lake_root, [_manifest_row(r, batch) for r in rows])
        maybe_fail("before_watermarks")
        mark = max(cursor, int(current or 0))   # a full re-read never moves it backwards
        ops.set_watermarks(spark, lake_root, [(SOURCE, ENTITY, str(mark), batch)])
        current = str(mark)
        since = cursor
