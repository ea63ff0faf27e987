"""Connected components of a graph held in a Spark DataFrame: alternating large-star / small-star.

Kiveris et al. 2014, "Connected Components in MapReduce and Beyond": each round is a few
shuffles, nothing is collected to the driver, and it converges in O(log^2 n) rounds. Vertices
are any orderable column type (row keys here); each component's label is its smallest vertex.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def _large_star(edges: DataFrame) -> DataFrame:
    both = edges.union(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst"))).distinct()
    low = both.groupBy("src").agg(F.min("dst").alias("m"))
    return (both.join(low, "src").where(F.col("dst") > F.col("src"))
            .select(F.col("dst").alias("src"), F.least("m", "src").alias("dst")).distinct())


def _small_star(edges: DataFrame) -> DataFrame:
    oriented = edges.select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst")).distinct()
    low = oriented.groupBy("src").agg(F.min("dst").alias("m"))
    members = oriented.join(low, "src").where(F.col("dst") != F.col("m")).select(
        F.col("dst").alias("src"), F.col("m").alias("dst"))
    return members.union(low.select("src", F.col("m").alias("dst"))).distinct()


def connected_components(edges: DataFrame, max_rounds: int = 64) -> DataFrame:
    """``(vertex, component)`` for every vertex in ``edges(src, dst)``; self-loops are ignored."""
    edges = edges.select("src", "dst").where(F.col("src") != F.col("dst"))
    for _ in range(max_rounds):
        edges = _small_star(_large_star(edges)).localCheckpoint()
        roots = edges.select(F.col("src").alias("dst")).distinct()
        if edges.join(roots, "dst", "left_semi").limit(1).count() == 0:
            break  # a star forest: every edge points at its component's smallest vertex
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    labels = edges.select(F.col("src").alias("vertex"), F.col("dst").alias("component"))
    roots = edges.select(F.col("dst").alias("vertex"), F.col("dst").alias("component"))
    return labels.union(roots).distinct()
