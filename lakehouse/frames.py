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
