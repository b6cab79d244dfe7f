"""Small DataFrame helpers shared by the jobs."""
from __future__ import annotations


def union_all(frames: list):
    """The rows of every DataFrame in ``frames``, matched by column name; None when there are none."""
    if not frames:
        return None
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def deleted_column():
    """True for a source tombstone: ``is_deleted`` is 1 (as a number or a string)."""
    from pyspark.sql import functions as F

    return F.coalesce(F.col("is_deleted").try_cast("int"), F.lit(0)) == 1


def live(df):
    """The rows of ``df`` not deleted at the source (all rows when it has no ``is_deleted``)."""
    return df.where(~deleted_column()) if "is_deleted" in df.columns else df
