"""File deliveries of the simulated city: legacy CSV exports, the FHIR bulk export, reference
snapshots. Rows are appended through :class:`FileSink`, which buffers a bounded number of lines
and appends them to their files, so memory stays bounded at any city size.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import zlib
from pathlib import Path

from ingest.simulator import catalog as C, legacy_spec as L
from ingest.simulator.timeline import Rec, state_as_of

FHIR_SOURCE = "fhir_CH350900"
FHIR_TYPES = ("Patient", "Encounter", "Condition", "MedicationRequest", "Observation")


def unit(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and ``parts`` (no shared RNG state)."""
    return zlib.crc32("|".join((str(seed), *parts)).encode("utf-8")) / 2**32


class FileSink:
    """Appends lines (bytes) to files with a bounded buffer; counts lines per file."""

    def __init__(self, limit: int = 20_000):
        self.buffers: dict[Path, list[bytes]] = {}
        self.lines: dict[Path, int] = {}
        self.pending, self.limit = 0, limit

    def create(self, path: Path, header: bytes | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header or b"")
        self.lines[path] = 1 if header else 0
        self.buffers[path] = []

    def add(self, path: Path, line: bytes) -> int:
        """Queue ``line``; returns its 1-based line number in the file."""
        self.buffers[path].append(line)
        self.lines[path] += 1
        self.pending += 1
        if self.pending >= self.limit:
            self.flush()
        return self.lines[path]

    def flush(self) -> None:
        for path, buf in self.buffers.items():
            if buf:
                with open(path, "ab") as f:
                    f.write(b"".join(buf))
                buf.clear()
        self.pending = 0


def reset_day_folders(source_dir: Path) -> None:
    """Remove all of a source's day folders: days after the as-of day must disappear, and the
    others are rewritten (with identical bytes for the same seed and arguments)."""
    if source_dir.exists():
        for child in source_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
    source_dir.mkdir(parents=True, exist_ok=True)


def delivery_days(rec: Rec, history_day: str, days: list[str]) -> list[str]:
    """The delivery folders ``rec`` appears in: the history export if it existed by then, and every
    later day on which it was created, corrected or deleted."""
    out = [history_day] if rec.created <= day_end_s(history_day) else []
    first, last = days[0], days[-1]
    for d in sorted({t[:10] for t in rec.change_times}):
        if first <= d <= last:
            out.append(d)
    return out


def day_end_s(day: str) -> str:
    return f"{day} 23:59:59"


def _legacy_value(v, fmt: str | None) -> str:
    if v is None:
        return ""
    if fmt is None:
        return str(v)
    s = str(v)
    return s.replace("-", "") if fmt == "yyyyMMdd" else s.replace("-", "/")


def _legacy_ts(ts: str) -> str:
    return ts.replace("-", "/")


class LegacyWriter:
    """Daily GBK CSV exports of the legacy county system."""

    def __init__(self, root: Path, county_code: str, history_day: str, days: list[str], sink: FileSink,
                 seed: int, rates, record_defect):
        self.source = f"legacy_{county_code}"
        self.dir = root / self.source
        self.history_day, self.days, self.sink, self.seed, self.rates = history_day, days, sink, seed, rates
        self.record_defect = record_defect
        reset_day_folders(self.dir)
        self.paths: dict[tuple[str, str], Path] = {}
        for day in [history_day, *days]:
            for e in L.EXPORTS:
                path = self.dir / day / f"{e.file_prefix}_{day.replace('-', '')}.csv"
                sink.create(path, self._line(e.headers))
                self.paths[(e.entity, day)] = path
        self._code_map()
        self.bad_file = self.paths[("residents", history_day)]   # the file with broken characters

    @staticmethod
    def _line(values: list[str]) -> bytes:
        out = []
        for v in values:
            if any(c in v for c in ',"\r\n'):
                v = '"' + v.replace('"', '""') + '"'
            out.append(v)
        return (",".join(out) + "\r\n").encode(L.ENCODING)

    def _code_map(self) -> None:
        path = self.dir / self.history_day / f"{L.CODE_MAP_PREFIX}.csv"
        lines = [self._line([h for h, _ in L.CODE_MAP_COLUMNS])]
        lines += [self._line([local, code, C.ICD10[code]]) for code, local in C.LEGACY_DX.items()]
        path.write_bytes(b"".join(lines))

    def rel(self, path: Path) -> str:
        return path.relative_to(self.dir).as_posix()

    def write(self, rec: Rec) -> None:
        e = L.EXPORT_BY_ENTITY[rec.entity]
        for day in delivery_days(rec, self.history_day, self.days):
            values, updated, deleted = state_as_of(rec, day_end_s(day))
            fields = [_legacy_value(values.get(col), fmt) for _, col, fmt in e.columns]
            for i, (_, col, _) in enumerate(e.columns):
                if col == "diagnosis_code" and values.get(col):
                    fields[i] = C.LEGACY_DX[values[col]]
            fields += [_legacy_ts(rec.created), _legacy_ts(updated), str(deleted)]
            path = self.paths[(rec.entity, day)]
            if path == self.bad_file and unit(self.seed, "enc", rec.key) < self.rates.bad_encoding:
                line = self._line(fields)
                name = fields[2].encode(L.ENCODING)
                line = line.replace(name, name[:2] + b"\xff" + name[2:], 1)
                n = self.sink.add(path, line)
                self.record_defect(self.source, rec.entity, rec.key, "bad_encoding",
                                   f"{self.rel(path)}#line{n}: invalid GBK byte in 姓名")
                continue
            if unit(self.seed, "mal", rec.key, day) < self.rates.malformed_row:
                variant = int(unit(self.seed, "malv", rec.key, day) * 3)
                if variant == 0:      # an unquoted comma inside a value: one field too many
                    bad = fields[:2] + ["备注：" + fields[1], *fields[2:]]
                    n = self.sink.add(path, (",".join(bad) + "\r\n").encode(L.ENCODING))
                    self.record_defect(self.source, rec.entity, rec.key, "malformed_row",
                                       f"{self.rel(path)}#line{n}: {len(bad)} fields, expected {len(fields)}")
                elif variant == 1:    # cut off: too few fields
                    n = self.sink.add(path, (",".join(fields[:-4]) + "\r\n").encode(L.ENCODING))
                    self.record_defect(self.source, rec.entity, rec.key, "malformed_row",
                                       f"{self.rel(path)}#line{n}: {len(fields) - 4} fields, expected {len(fields)}")
                else:                 # a raw line break inside a value: two broken lines
                    cut = len(fields) // 2
                    n = self.sink.add(path, (",".join(fields[:cut]) + "\r\n").encode(L.ENCODING))
                    m = self.sink.add(path, (",".join(["续" + fields[cut]] + fields[cut + 1:]) + "\r\n").encode(L.ENCODING))
                    self.record_defect(self.source, rec.entity, rec.key, "malformed_row",
                                       f"{self.rel(path)}#line{n}: line break inside a value")
                    self.record_defect(self.source, rec.entity, f"{self.rel(path)}#line{m}", "malformed_row",
                                       f"continuation of {rec.key} without a key")
                continue
            self.sink.add(path, self._line(fields))


class FhirWriter:
    """The city hospital's daily FHIR R4 bulk export (NDJSON + Bulk Data manifest)."""

    def __init__(self, root: Path, history_day: str, days: list[str], sink: FileSink, seed: int, rates,
                 record_defect):
        self.dir = root / FHIR_SOURCE
        self.history_day, self.days, self.sink, self.seed, self.rates = history_day, days, sink, seed, rates
        self.record_defect = record_defect
        reset_day_folders(self.dir)
        self.counts: dict[tuple[str, str], int] = {}
        for day in [history_day, *days]:
            for t in (*FHIR_TYPES, "deleted"):
                sink.create(self._path(day, t))
                self.counts[(day, t)] = 0

    def _path(self, day: str, rtype: str) -> Path:
        return self.dir / day / f"{rtype}.ndjson"

    def write(self, rec: Rec) -> None:
        for day in delivery_days(rec, self.history_day, self.days):
            values, updated, deleted = state_as_of(rec, day_end_s(day))
            stamp = f"{updated[:10]}T{updated[11:]}+08:00"
            if deleted:
                if day != self.history_day and rec.del_at[:10] != day:
                    continue
                bundle = {"resourceType": "Bundle", "type": "transaction",
                          "entry": [{"request": {"method": "DELETE", "url": f"{rec.entity}/{rec.key}"}}],
                          "meta": {"lastUpdated": stamp}}
                self._emit(day, "deleted", rec, bundle)
                continue
            self._emit(day, rec.entity, rec, {**values, "meta": {"lastUpdated": stamp}})

    def _emit(self, day: str, rtype: str, rec: Rec, obj: dict) -> None:
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        path = self._path(day, rtype)
        if unit(self.seed, "json", rec.key, day, rtype) < self.rates.invalid_json:
            line = line[: len(line) // 2]
            self.record_defect(FHIR_SOURCE, rec.entity, rec.key, "invalid_json",
                               f"{path.relative_to(self.dir).as_posix()}: line truncated")
        self.sink.add(path, (line + "\n").encode("utf-8"))
        self.counts[(day, rtype)] += 1

    def finish(self) -> None:
        for day in [self.history_day, *self.days]:
            manifest = {
                "transactionTime": f"{day}T23:59:59+08:00",
                "request": f"https://his.ch350900.example/fhir/$export?_since={day}T00:00:00+08:00"
                if day != self.history_day else "https://his.ch350900.example/fhir/$export",
                "requiresAccessToken": False,
                "output": [{"type": t, "url": f"{t}.ndjson", "count": self.counts[(day, t)]} for t in FHIR_TYPES],
                "deleted": [{"type": "Bundle", "url": "deleted.ndjson", "count": self.counts[(day, "deleted")]}],
                "error": [],
            }
            (self.dir / day / "manifest.json").write_text(
                json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def files(self) -> int:
        return (len(FHIR_TYPES) + 2) * (1 + len(self.days))


def write_csv(path: Path, header: list[str], rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    n = 0
    for row in rows:
        w.writerow(row)
        n += 1
    path.write_text(buf.getvalue(), encoding="utf-8")
    return n
