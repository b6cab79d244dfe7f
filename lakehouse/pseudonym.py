"""Pseudonymous person identifiers: HMAC-SHA256 of the normalised ID-card number.

The key comes from settings (``JL_PSEUDONYM_KEY``). The Spark expression builds the HMAC from two
SHA-256 calls (RFC 2104), so millions of rows are hashed without a Python UDF; a unit test checks
it against :mod:`hmac`.
"""
from __future__ import annotations

import hashlib
import hmac

from lakehouse.idcard import normalise

PERSON_ID_HEX_CHARS = 32  # 128 bits: collision-free for any city, short enough to read


def person_id(id_card_no: str, key: bytes) -> str:
    """The pseudonymous ``person_id`` of an ID-card number (Python reference implementation)."""
    norm = normalise(id_card_no) or ""
    return hmac.new(key, norm.encode("utf-8"), hashlib.sha256).hexdigest()[:PERSON_ID_HEX_CHARS]


def _pads(key: bytes) -> tuple[bytes, bytes]:
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def spark_person_id(normalised_id_col, key: bytes):
    """Column expression equal to :func:`person_id` for an already normalised ID column."""
    from pyspark.sql import functions as F

    ipad, opad = _pads(key)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(normalised_id_col, "UTF-8")), 256))
    return F.substring(F.sha2(F.concat(F.lit(opad), inner), 256), 1, PERSON_ID_HEX_CHARS)
