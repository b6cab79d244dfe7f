"""``lakehouse imaging inspect DIR``: the pipeline's own parsing, de-identification and thumbnail
code on every file in a folder, one report per file.

Per file: ``status`` (ok / repaired / quarantined) and ``reason`` exactly as the Spark job decides
them (:func:`spark_jobs.imaging.parse.parse_file`), modality and frames, whether a thumbnail was
made (or why not), and every identifying attribute that survived de-identification (an empty
list is the expected answer). Nothing is written anywhere.
"""
from __future__ import annotations

from pathlib import Path

from spark_jobs.imaging import parse


def inspect_file(path: Path, key: bytes) -> dict:
    from spark_jobs.imaging.deid import deidentify, surviving_identifiers
    from spark_jobs.imaging.thumbnails import ThumbnailError, thumbnail_png

    row = parse.parse_file(str(path))
    out = {"file": str(path), "status": row["status"], "reason": row["reason"], "repairs": row["repairs"],
           "modality": row["modality"], "sop_class": row["sop_class_name"] or row["sop_class_uid"],
           "transfer_syntax": row["transfer_syntax_name"], "frames": row["frames"],
           "thumbnail": False, "thumbnail_reason": None, "deidentified": False, "burned_in_risk": None,
           "surviving_identifiers": []}
    if row["status"] == "quarantined":
        return out
    ds = parse.load_dataset(str(path))
    try:
        png = thumbnail_png(ds)
        out["thumbnail"], out["thumbnail_bytes"] = True, len(png)
    except ThumbnailError as exc:
        out["thumbnail_reason"] = exc.reason
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the job would record it the same way
        out["thumbnail_reason"] = f"render_failed: {type(exc).__name__}: {exc}"[:200]
    try:
        result = deidentify(ds, key=key, patient_key=row["patient_id"] or row["study_instance_uid"] or str(path))
        out["deidentified"] = True
        out["burned_in_risk"] = result.burned_in_risk
        out["burned_in_reason"] = result.burned_in_reason
        out["surviving_identifiers"] = surviving_identifiers(ds, result.dataset)
    except Exception as exc:  # noqa: BLE001
        out["deid_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def inspect_dir(directory: Path, key: bytes) -> dict:
    """Every file under ``directory`` (recursively), sorted, and a count per status."""
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file())
    rows = [inspect_file(p, key) for p in files]
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["status"]] = totals.get(r["status"], 0) + 1
    return {"files": rows, "totals": {**totals, "thumbnails": sum(r["thumbnail"] for r in rows),
                                      "with_surviving_identifiers": sum(bool(r["surviving_identifiers"]) for r in rows)}}
