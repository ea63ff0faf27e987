"""Rehydration in the dedup job (FineWeb2): a repeat count per kept document from its MinHash cluster size.

Weights per language (:func:`operators.dedup.rehydration.weights_for`): FineWeb2's shipped tables, or ones
computed from this run's own filter outcomes when the input was curated in ``annotate`` mode (each kept
document then carries its ``filter_reason``, so the removal rate of every cluster size is known, as FineWeb2
measured it after dedup), or the simple rule. Only grouped counts (language x size x outcome) reach the driver.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from operators.dedup.rehydration import distribution, repeats, weights_for

COLUMN = "rehydration_repeats"


def rehydrate(spark, kept, rule: str, max_reps: int):
    """(``kept`` with ``rehydration_repeats``, stats per language: source of the weights, documents, and
    documents and characters before and after rehydration)."""
    from pyspark.sql import functions as F

    language = F.col("language") if "language" in kept.columns else F.lit(None).cast("string")
    removed = F.col("filter_reason").isNotNull() if "filter_reason" in kept.columns else F.lit(False)
    kept = kept.withColumn("_language", language)
    groups = (kept.groupBy("_language", "minhash_cluster_size", removed.alias("_removed"))
              .agg(F.count("*").alias("n"), F.sum(F.length("text")).alias("chars")).collect())
    by_language: dict = defaultdict(list)
    for row in groups:
        by_language[row["_language"]].append(
            (row["minhash_cluster_size"], row["_removed"], row["n"], row["chars"] or 0))
    outcomes = any(row["_removed"] for row in groups)  # annotate-mode input; filter mode kept only passes
    lookup, stats = [], {}
    for lang, rows in sorted(by_language.items(), key=lambda item: item[0] or ""):
        sizes, gone, counts, chars = (np.array(column) for column in zip(*rows, strict=True))
        run = distribution(sizes, gone, counts=counts) if outcomes else None
        weights, source = weights_for(lang or "", max_reps, rule, run)
        reps = repeats(sizes, weights)
        stays = ~gone.astype(bool)
        stats[lang or "und"] = {
            "weights": source, "documents": int(counts[stays].sum()), "characters": int(chars[stays].sum()),
            "documents_rehydrated": int((counts * reps)[stays].sum()),
            "characters_rehydrated": int((chars * reps)[stays].sum())}
        lookup += [(lang, int(s), int(r)) for s, r in zip(sizes, reps, strict=True)]
    table = spark.createDataFrame(lookup, f"_lang string, _size long, {COLUMN} long").distinct()
    joined = kept.join(table, F.col("_language").eqNullSafe(F.col("_lang"))
                       & (F.col("minhash_cluster_size") == F.col("_size")), "left")
    return joined.drop("_language", "_lang", "_size").fillna(1, [COLUMN]), stats
