"""Score ``detect_r_peaks`` against expert annotations in a directory of WFDB records.

Sensitivity and PPV are reported as **percentages** (0-100).

Usage: ``python -m spark_jobs.ecg.evaluate DIR [--json]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .detect import detect_r_peaks
from .readers import read_wfdb

__all__ = ["BEAT_SYMBOLS", "match_beats", "load_reference", "evaluate_record", "evaluate_dir", "main"]

BEAT_SYMBOLS = frozenset("N L R B A a J S V r F e j n E / f Q ?".split())
TOLERANCE_S = 0.150
_LUDB_LEAD_PREFERENCE = ("i", "ii", "v5", "v6", "avf", "iii", "v4", "v1", "v2", "v3", "avl", "avr")


def match_beats(reference, detections, tol_samples: int) -> tuple[int, int, int]:
    """One-to-one matching within ±tol_samples. Returns (tp, fn, fp).

    Greedy on sorted pairwise distances (closest pairs first), so each reference
    beat takes at most one detection and vice versa.
    """
    ref = np.sort(np.asarray(reference, dtype=np.int64).ravel())
    det = np.sort(np.asarray(detections, dtype=np.int64).ravel())
    if ref.size == 0 or det.size == 0:
        return 0, int(ref.size), int(det.size)
    pairs = []
    for i, r in enumerate(ref):
        lo = np.searchsorted(det, r - tol_samples, side="left")
        hi = np.searchsorted(det, r + tol_samples, side="right")
        for j in range(lo, hi):
            pairs.append((abs(int(det[j]) - int(r)), i, j))
    pairs.sort()
    used_r = np.zeros(ref.size, bool)
    used_d = np.zeros(det.size, bool)
    tp = 0
    for _, i, j in pairs:
        if not used_r[i] and not used_d[j]:
            used_r[i] = used_d[j] = True
            tp += 1
    return tp, int(ref.size - tp), int(det.size - tp)


def _pct(num: int, den: int) -> float | None:
    return round(100.0 * num / den, 4) if den else None


def load_reference(record_base: Path):
    """Return (reference_samples, window or None, source) or None if the record has no annotations."""
    import wfdb

    base = str(record_base)
    if record_base.with_name(record_base.name + ".atr").is_file():
        ann = wfdb.rdann(base, "atr")
        syms = np.asarray(ann.symbol)
        keep = np.isin(syms, list(BEAT_SYMBOLS))
        return np.asarray(ann.sample)[keep].astype(np.int64), None, "atr"
    for lead in _LUDB_LEAD_PREFERENCE:
        if record_base.with_name(f"{record_base.name}.{lead}").is_file():
            try:
                ann = wfdb.rdann(base, lead)
            except Exception:  # noqa: BLE001 - not an annotation file
                continue
            syms = np.asarray(ann.symbol)
            ref = np.asarray(ann.sample)[syms == "N"].astype(np.int64)
            if ref.size == 0:
                continue
            return ref, (int(ref.min()), int(ref.max())), f"ludb:{lead}"
    return None


def evaluate_record(record_base: Path, tol_s: float = TOLERANCE_S) -> dict | None:
    loaded = load_reference(record_base)
    if loaded is None:
        return None
    ref, window, source = loaded
    t0 = time.perf_counter()
    rec = read_wfdb(record_base)
    t1 = time.perf_counter()
    res = detect_r_peaks(rec.signals, rec.fs, rec.lead_names)
    t2 = time.perf_counter()
    tol = int(round(tol_s * rec.fs))
    det = np.asarray(res.r_peaks, dtype=np.int64)
    if window is not None:
        lo, hi = window[0] - tol, window[1] + tol
        det = det[(det >= lo) & (det <= hi)]
    tp, fn, fp = match_beats(ref, det, tol)
    return {
        "record": str(record_base), "reference": int(ref.size), "reference_source": source,
        "tp": tp, "fn": fn, "fp": fp, "sensitivity": _pct(tp, tp + fn), "ppv": _pct(tp, tp + fp),
        "read_s": round(t1 - t0, 4), "detect_s": round(t2 - t1, 4), "duration_s": round(rec.duration_s, 2),
        "algorithm": res.algorithm,
    }


def evaluate_dir(directory, tol_s: float = TOLERANCE_S) -> dict:
    """Evaluate every annotated WFDB record under ``directory`` (recursive).

    Returns ``{"records": [...], "total": {...}, "units": "percent", "tolerance_s": tol_s}``.
    """
    import neurokit2  # noqa: F401  - import once up front so it is not timed as detection

    d = Path(directory)
    records = []
    for hea in sorted(d.rglob("*.hea")):
        r = evaluate_record(hea.with_suffix(""), tol_s)
        if r is not None:
            records.append(r)
    tp = sum(r["tp"] for r in records)
    fn = sum(r["fn"] for r in records)
    fp = sum(r["fp"] for r in records)
    total = {"record": "total", "reference": sum(r["reference"] for r in records), "tp": tp, "fn": fn, "fp": fp,
             "sensitivity": _pct(tp, tp + fn), "ppv": _pct(tp, tp + fp)}
    return {"records": records, "total": total, "units": "percent", "tolerance_s": tol_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    a = ap.parse_args(argv)
    out = evaluate_dir(a.directory)
    if a.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for r in out["records"] + [out["total"]]:
            print(f"{r['record']:<50} ref={r['reference']:>5} tp={r['tp']:>5} fn={r['fn']:>3} fp={r['fp']:>3} "
                  f"Se={r['sensitivity']} PPV={r['ppv']} {r.get('detect_s', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
