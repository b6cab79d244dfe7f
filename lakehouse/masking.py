"""Masking of direct identifiers for anything outside the restricted layer (quarantine payloads,
exports, API responses): enough left to recognise a record, not enough to identify a person."""
from __future__ import annotations

# source columns that are direct identifiers, by kind
IDENTIFIER_COLUMNS = {"name": "name", "id_card_no": "id_card", "phone": "phone", "address": "address"}


def mask_value(kind: str, value: str | None) -> str | None:
    """Python reference: 张** / 350921********123X / 138****5678 / first 6 characters + ***."""
    if value is None:
        return None
    if kind == "name":
        return value[:1] + "*" * max(len(value) - 1, 1)
    if kind == "id_card":
        return value[:6] + "*" * max(len(value) - 10, 0) + value[-4:] if len(value) > 10 else "*" * len(value)
    if kind == "phone":
        return value[:3] + "****" + value[-4:] if len(value) >= 11 else "*" * len(value)
    if kind == "address":
        return value[:6] + "***"
    raise ValueError(f"unknown identifier kind {kind!r}")


def spark_mask(kind: str, col):
    """Column twin of :func:`mask_value`."""
    from pyspark.sql import functions as F

    n = F.length(col)
    if kind == "name":
        masked = F.concat(F.substring(col, 1, 1), F.repeat(F.lit("*"), F.greatest(n - 1, F.lit(1))))
    elif kind == "id_card":
        masked = F.when(n > 10, F.concat(F.substring(col, 1, 6), F.repeat(F.lit("*"), n - 10),
                                         F.substring(col, -4, 4))).otherwise(F.repeat(F.lit("*"), n))
    elif kind == "phone":
        masked = F.when(n >= 11, F.concat(F.substring(col, 1, 3), F.lit("****"), F.substring(col, -4, 4))) \
                  .otherwise(F.repeat(F.lit("*"), n))
    elif kind == "address":
        masked = F.concat(F.substring(col, 1, 6), F.lit("***"))
    else:
        raise ValueError(f"unknown identifier kind {kind!r}")
    return F.when(col.isNotNull(), masked)


def masked_columns(df):
    """``df``'s columns with every direct identifier masked (for payloads leaving the restricted layer)."""
    from pyspark.sql import functions as F

    return [spark_mask(IDENTIFIER_COLUMNS[c], F.col(c)).alias(c) if c in IDENTIFIER_COLUMNS else F.col(c)
            for c in df.columns]
