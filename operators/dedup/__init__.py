"""Deduplication: engine-free hashing and MinHash over Arrow, and the Spark side (``spark_*``)."""
