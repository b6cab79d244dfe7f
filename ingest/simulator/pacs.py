"""The simulated city's modalities sending their imaging exams to the regional PACS (Orthanc).

By default the simulator drops imaging exams as files (``dropzone/dicom/<YYYY-MM-DD>/<org_code>/
<accession_no>/<n>.dcm``, source ``dicom``). With a PACS URL (``lakehouse simulate --pacs URL``)
they are sent to the PACS instead, the way a modality's storage commitment ends: one
``POST /instances`` per DICOM file (Orthanc answers ``Success``, or ``AlreadyStored`` for an
instance it holds with the same content, so sending a day twice changes nothing), and the
PACS's changes feed is what the ``orthanc`` connector reads.

A PACS refuses a file that ends in the middle of an element (Orthanc: HTTP 400 "Bad file
format"). A modality whose acquisition is cut short does not send such a file: it sends a
well-formed data set whose Pixel Data is shorter than the image geometry needs. So a file
refused as it is and truncated inside its Pixel Data (the simulator's ``truncated_dicom``
defect) is resent once in that form, and the connector's check catches it as
``truncated_dicom``, the defect the ground-truth manifest records for that exam. Any other
refused file stays in the drop zone (the file source still delivers it) and is listed in the
summary.

This module talks to the PACS as an outside system would, with the standard library only; it
shares nothing with the connector.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DICOM_SOURCE = "dicom"            # the drop-zone folder of imaging exams
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian


@dataclass
class PacsStoreSummary:
    """What one store run sent: per file (relative to ``dropzone/dicom``) the Orthanc instance id."""
    files: int = 0
    stored: int = 0                 # new in the PACS
    already_stored: int = 0         # the PACS held the same instance already
    resent_short: int = 0           # truncated files resent as well-formed data sets with short Pixel Data
    instances: dict[str, str] = field(default_factory=dict)          # rel_path → Orthanc instance id
    rejected: dict[str, str] = field(default_factory=dict)           # rel_path → the PACS's answer

    def add(self, other: "PacsStoreSummary") -> "PacsStoreSummary":
        self.files += other.files
        self.stored += other.stored
        self.already_stored += other.already_stored
        self.resent_short += other.resent_short
        self.instances.update(other.instances)
        self.rejected.update(other.rejected)
        return self


class PacsRefused(RuntimeError):
    def __init__(self, status: int, detail: str):
        super().__init__(f"PACS 拒收 (HTTP {status}): {detail}")
        self.status, self.detail = status, detail


def _auth_header(user: str | None, password: str | None) -> str | None:
    user = user if user is not None else os.environ.get("JL_ORTHANC_USER")
    password = password if password is not None else os.environ.get("JL_ORTHANC_PASSWORD")
    return ("Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()) if user else None


def post_instance(pacs_url: str, data: bytes, auth: str | None = None, timeout: float = 60) -> dict:
    """``POST /instances`` of one DICOM file: Orthanc's answer (``ID``, ``ParentStudy``, ``Status``).
    Raises :class:`PacsRefused` when the PACS refuses the file (HTTP 4xx)."""
    req = urllib.request.Request(pacs_url.rstrip("/") + "/instances", data=data, method="POST",
                                 headers={"Content-Type": "application/dicom"})
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        if 400 <= exc.code < 500 and exc.code not in (401, 403):
            raise PacsRefused(exc.code, detail) from exc
        raise RuntimeError(f"PACS {pacs_url} 存储失败 (HTTP {exc.code}): {detail}") from exc
    except urllib.error.URLError as exc:
        raise RuntimeError(f"无法连接 PACS {pacs_url}: {exc.reason}") from exc


def short_pixel_data(data: bytes) -> bytes | None:
    """``data`` (a file cut inside its Pixel Data) as a well-formed data set whose Pixel Data holds
    the bytes that are there (an even count); None when the file is not cut that way."""
    pos = data.rfind(PIXEL_DATA_TAG)
    if pos < 0 or data[pos + 4:pos + 6] not in (b"OB", b"OW"):
        return None
    declared = int.from_bytes(data[pos + 8:pos + 12], "little")   # tag(4) VR(2) reserved(2) length(4)
    present = len(data) - (pos + 12)
    if declared == 0xFFFFFFFF or present >= declared:
        return None
    present -= present % 2
    return data[:pos + 8] + present.to_bytes(4, "little") + data[pos + 12:pos + 12 + present]


def _exam_order(path: Path):
    return (path.parent.as_posix(), int(path.stem) if path.stem.isdigit() else 0, path.name)


def store_files(paths: list[Path], base: Path, pacs_url: str, *, user: str | None = None,
                password: str | None = None) -> PacsStoreSummary:
    """Send ``paths`` (DICOM files under ``base``) to the PACS at ``pacs_url``, in order."""
    auth = _auth_header(user, password)
    out = PacsStoreSummary()
    for path in paths:
        rel = path.relative_to(base).as_posix()
        out.files += 1
        data = path.read_bytes()
        try:
            answer = post_instance(pacs_url, data, auth)
        except PacsRefused as refused:
            short = short_pixel_data(data)
            if short is None:
                out.rejected[rel] = refused.detail
                continue
            try:
                answer = post_instance(pacs_url, short, auth)
            except PacsRefused as again:
                out.rejected[rel] = again.detail
                continue
            out.resent_short += 1
        if answer.get("Status") == "AlreadyStored":
            out.already_stored += 1
        else:
            out.stored += 1
        out.instances[rel] = answer["ID"]
    return out


def day_files(drop_root: Path, day: str) -> list[Path]:
    """The imaging files the simulator dropped for ``day`` (YYYY-MM-DD), exam by exam, in image order."""
    folder = Path(drop_root) / DICOM_SOURCE / day
    return sorted((p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")), key=_exam_order) \
        if folder.is_dir() else []


def store_day_in_pacs(drop_root: Path, day: str, pacs_url: str, *, user: str | None = None,
                      password: str | None = None, remove: bool = False) -> PacsStoreSummary:
    """Send the imaging exams dropped for ``day`` under ``drop_root`` (the drop zone) to the PACS;
    with ``remove``, the files the PACS accepted leave the drop zone (so the ``dicom`` file source
    does not deliver them a second time). Login: ``user`` / ``password``, else
    ``JL_ORTHANC_USER`` / ``JL_ORTHANC_PASSWORD`` from the environment, else none."""
    base = Path(drop_root) / DICOM_SOURCE
    summary = store_files(day_files(drop_root, day), base, pacs_url, user=user, password=password)
    if remove:
        for rel in summary.instances:
            (base / rel).unlink(missing_ok=True)
        _prune_empty(base / day)
    return summary


def store_dropzone_in_pacs(drop_root: Path, pacs_url: str, *, days: list[str] | None = None,
                           user: str | None = None, password: str | None = None,
                           remove: bool = True) -> PacsStoreSummary:
    """:func:`store_day_in_pacs` for every delivery day in the drop zone (or ``days``), oldest first."""
    base = Path(drop_root) / DICOM_SOURCE
    if days is None:
        days = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    out = PacsStoreSummary()
    for day in days:
        out.add(store_day_in_pacs(drop_root, day, pacs_url, user=user, password=password, remove=remove))
    return out


def _prune_empty(folder: Path) -> None:
    """Remove the empty folders under and including ``folder``."""
    if not folder.is_dir():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        shutil.rmtree(folder)
