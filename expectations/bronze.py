"""Suites of the bronze tables that have no hand-written suite, generated from the connectors.

Every bronze table the connectors write gets a suite: the hand-written ones in
``expectations/suites`` (the regional tables the indicators read first) and, for every other
table — the rest of the regional database, each legacy county's exports and code maps, each
hospital's FHIR resources, the reference tables, the media-file registers — one built here from
what the connector declares (its business key) and the columns the table has:

- conformance: the key and metadata columns exist; the key is unique; ``is_deleted`` is 0 or 1;
  ``*_date`` columns are real calendar dates (a warning: bronze keeps a value as received);
- completeness: the table has rows; key and metadata are never NULL (critical: the connector put
  them there); a record that names a person names it (``resident_id`` / ``patient_id``: a warning,
  conformance quarantines it as ``unresolved_person``);
- plausibility: an ID-card number has the GB 11643 shape (a warning: the EMPI judges it).
"""
from __future__ import annotations

import fnmatch
import importlib
from functools import lru_cache

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.builders import (
    COMPLETENESS,
    CONFORMANCE,
    CRITICAL,
    DATE_REGEX,
    METADATA_COLUMNS,
    WARNING,
    check,
    in_set,
    key,
    matches,
    not_null,
    of_type,
)

ID_CARD_REGEX = r"^[0-9]{17}[0-9X]$"
PERSON_COLUMNS = ("resident_id", "patient_id")


@lru_cache(maxsize=1)
def declared_keys() -> dict[str, tuple[str, ...]]:
    """``{bronze table: business key}`` of every table a connector declares (legacy contracts
    included), as ``bronze.<source>__<entity>``."""
    from ingest.connectors import legacy_csv
    from ingest.connectors.common import bronze_table
    from ingest.connectors.sources import SERVICE_SOURCES, SOURCE_KINDS
    from lakehouse.tables import _REGISTRY

    for module, *_ in (*SOURCE_KINDS.values(), *SERVICE_SOURCES.values()):
        importlib.import_module(module)       # each connector registers its tables on import
    for contract in legacy_csv.find_contracts():
        for feed in (*contract.exports, *contract.code_maps):
            bronze_table(contract.source, feed.entity, (feed.key,))
    return {name: spec.keys for name, spec in _REGISTRY.items() if spec.layer == "bronze"}


def keys_of(table_name: str) -> tuple[str, ...] | None:
    """The business key of ``table_name``: declared, or that of a table of the same kind of source
    and entity (another hospital's FHIR resource, another county's export); None if unknown."""
    declared = declared_keys()
    if table_name in declared:
        return declared[table_name]
    source, _, entity = table_name.removeprefix("bronze.").partition("__")
    kind = source.split("_", 1)[0]
    for name, keys in sorted(declared.items()):
        other_source, _, other_entity = name.removeprefix("bronze.").partition("__")
        if other_entity == entity and fnmatch.fnmatchcase(other_source, f"{kind}_*"):
            return keys
    return None


def build_bronze_suite(table_name: str, columns: list[str]) -> gx.ExpectationSuite:
    """The generated suite of ``table_name``, a bronze table with ``columns``."""
    keys = keys_of(table_name)
    if keys is None:
        raise LookupError(f"no connector declares {table_name}: no suite can be generated")
    checks = [
        check(gxe.ExpectTableRowCountToBeBetween, category=COMPLETENESS, severity=WARNING, min_value=1),
        # exact_match=False: a column the source adds later is kept in bronze, not a failure
        check(gxe.ExpectTableColumnsToMatchSet, category=CONFORMANCE, severity=CRITICAL,
              column_set=[*keys, *METADATA_COLUMNS], exact_match=False),
        *(not_null(c) for c in METADATA_COLUMNS),
        of_type("_ingested_at", "TimestampType"),
    ]
    if len(keys) == 1:
        checks += key(keys[0])
    else:
        checks += [*(not_null(k) for k in keys),
                   check(gxe.ExpectCompoundColumnsToBeUnique, category=CONFORMANCE, severity=CRITICAL,
                         column_list=list(keys))]
    if "is_deleted" in columns:
        checks += [not_null("is_deleted"), in_set("is_deleted", [0, 1])]
    for column in columns:
        if column.endswith("_date") and column not in keys:
            checks.append(matches(column, DATE_REGEX, severity=WARNING,
                                  description=f"{column} is a real calendar date 'YYYY-MM-DD'"))
        if column in PERSON_COLUMNS:
            checks.append(not_null(column, severity=WARNING))
        if column == "id_card_no":
            checks.append(matches(column, ID_CARD_REGEX, severity=WARNING,
                                  description="an ID-card number has 17 digits and a check character"))
    return gx.ExpectationSuite(name=table_name.replace(".", "__", 1), expectations=checks)
