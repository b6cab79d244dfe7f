"""Quarantine rows: a rejected record with its key, reason and payload (identifiers masked).

Every stage that rejects records (the connectors, conformance) builds its quarantine rows here, so
the shape and the masking are the same wherever a row is turned away.
"""
from __future__ import annotations

from lakehouse.masking import masked_columns


def quarantine_rows(df, key: str, reason_code, reason_detail, payload_columns: list[str] | None = None,
                    keep: tuple[str, ...] = ()):
    """``df``'s rows as quarantine rows: ``record_key``, ``reason_code``, ``reason_detail`` (columns
    or literals), ``raw_payload`` (JSON of ``payload_columns``, default every column, with direct
    identifiers masked) and ``_row_hash`` (of the payload), unique on (record_key, _row_hash);
    plus the columns in ``keep`` as they are (e.g. ``_source_file``)."""
    from pyspark.sql import functions as F

    payload = df.select(*(payload_columns or df.columns))
    rows = df.select(
        F.coalesce(F.col(key).cast("string"), F.lit("")).alias("record_key"),
        reason_code.alias("reason_code"), reason_detail.alias("reason_detail"),
        F.to_json(F.struct(*masked_columns(payload))).alias("raw_payload"),
        *keep,
    )
    return rows.withColumn("_row_hash", F.sha2("raw_payload", 256)).dropDuplicates(["record_key", "_row_hash"])
