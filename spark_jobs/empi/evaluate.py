"""How well the EMPI finds the same person: pairwise precision and recall against the simulator's
ground truth (``duplicate_persons.csv``: every source record about one real person shares a
``person_key``).

Over the records present in both (a record quarantined at bronze is in neither), a pair of records
is *true* when they share a ``person_key`` and *predicted* when they share a ``person_id``:
precision = |true ∩ predicted| / |predicted|, recall = |true ∩ predicted| / |true|. Pairs of two
records with the same valid ID-card number are found by any EMPI; the *hard* figures leave them out
and measure only the probabilistic part.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class PairScores:
    records: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    precision: float
    recall: float
    hard_true_pairs: int
    hard_predicted_pairs: int
    hard_correct_pairs: int
    hard_precision: float
    hard_recall: float

    def as_dict(self) -> dict:
        return asdict(self)


def _pairs(n):
    from pyspark.sql import functions as F

    return F.sum((F.col(n) * (F.col(n) - 1) / 2).cast("long"))


def evaluate(spark, lake_root: str, duplicate_persons_csv: Path) -> PairScores:
    from pyspark.sql import functions as F

    truth = spark.read.option("header", True).csv(str(duplicate_persons_csv)).select(
        "person_key", "source", F.col("record_key").alias("source_record_id"))
    xref = (spark.read.format("delta").load(f"{lake_root}/silver/person_xref")
            .select("source", "source_record_id", "person_id",
                    F.when(F.col("id_card_status") == "valid", F.col("person_id")).alias("valid_id")))
    both = truth.join(xref, ["source", "source_record_id"]).persist()
    try:
        def count(*keys, where=None):
            df = both if where is None else both.where(where)
            return df.groupBy(*keys).count().agg(_pairs("count").alias("p")).first().p or 0

        true_pairs, predicted, correct = count("person_key"), count("person_id"), count("person_key", "person_id")
        # pairs that share a valid number: the deterministic part
        easy = count("person_key", "valid_id", where="valid_id IS NOT NULL")
        easy_predicted = count("valid_id", where="valid_id IS NOT NULL")
        records = both.count()
    finally:
        both.unpersist()
    hard_true, hard_pred, hard_ok = true_pairs - easy, predicted - easy_predicted, correct - easy

    def ratio(a, b):
        return round(a / b, 4) if b else 1.0

    return PairScores(records, true_pairs, predicted, correct, ratio(correct, predicted), ratio(correct, true_pairs),
                      hard_true, hard_pred, hard_ok, ratio(hard_ok, hard_pred), ratio(hard_ok, hard_true))
