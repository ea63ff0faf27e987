"""The dedup job's Spark plan: URL, exact and MinHash-LSH fuzzy duplicates, over a run's shards.

Input and output go through our own Arrow readers and writers inside ``mapInArrow`` (not
Spark's Hadoop connectors), so ``s3://`` works with the same settings as every other stage and
each input shard comes back as one Parquet file of the same name. A row is identified by
``_row`` = (index of its file in the input list) << 32 | (row index in the file), never by its
``id``, which a copied shard or a faulty upstream stage can repeat.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from operators.dedup.exact import text_keys
from operators.dedup.minhash import (
    bands_of_words,
    jaccard,
    language_salt,
    normalized_words,
    tokenized_words,
    word_shingle_sets,
    wordless,
)
from operators.dedup.spark_components import connected_components
from operators.filters.languages import rows_by_language
from operators.io.layout import shard_of
from operators.io.parquet_batches import file_batches
from operators.io.storage import Storage, discard, join
from operators.schema import conform

# every removed row (``_row``) and the row it duplicates (``_kept``); ``shard`` is ``<crawl>/<shard>``
DUPLICATES_SCHEMA = "_row long, id string, shard string, _kept long, kept_id string, kept_shard string, method string"
NEEDED_COLUMNS = ("id", "text")


def _problem(storage: Storage, path: str, needed: tuple[str, ...] = NEEDED_COLUMNS) -> str | None:
    """Why ``path`` cannot be deduped (unreadable footer, missing column), or None."""
    fs, inner = storage.filesystem(path)
    try:
        names = pq.read_schema(inner, filesystem=fs).names
    except (pa.ArrowException, OSError) as err:
        return "unreadable: " + " ".join(str(err).split())
    missing = [c for c in needed if c not in names]
    return f"missing column {', '.join(missing)}" if missing else None


def check_files(spark: SparkSession, storage: Storage, files: list[str],
                needed: tuple[str, ...] = NEEDED_COLUMNS) -> dict[str, str]:
    """``{path: reason}`` for the files that cannot be deduped (footers read on the executors): unreadable, or
    without a ``needed`` column."""
    def check(batches):
        for batch in batches:
            found = [(p, r) for p in batch.column("path").to_pylist() if (r := _problem(storage, p, needed))]
            yield pa.RecordBatch.from_arrays([pa.array([p for p, _ in found], pa.string()),
                                              pa.array([r for _, r in found], pa.string())], names=["path", "reason"])

    parts = max(1, min(len(files), 4 * spark.sparkContext.defaultParallelism))
    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(parts)
    return {r["path"]: r["reason"] for r in paths.mapInArrow(check, "path string, reason string").collect()}


READ_BATCH = 2048  # rows per Arrow batch read from an input file and signed at once
VERIFY_BATCH = 1024  # candidate pairs shingled at once


def read_shards(spark: SparkSession, storage: Storage, files: list[tuple[int, str]], schema: pa.Schema,
                extra=None, extra_fields: tuple = ()) -> DataFrame:
    """Every row of ``files`` ((index, path) pairs) in ``schema``'s columns, plus ``_row``, ``_crawl``, ``_shard``.

    ``extra(table)`` adds columns. Only ``schema``'s columns are read, a batch at a time. A file that cannot
    be read fails the job with its name.
    """
    full = pa.schema(list(schema) + [pa.field("_row", pa.int64()), pa.field("_crawl", pa.string()),
                                     pa.field("_shard", pa.string())] + list(extra_fields))

    def read(batches):
        for batch in batches:
            for index, path in zip(batch.column("index").to_pylist(), batch.column("path").to_pylist(), strict=True):
                crawl, shard = shard_of(path)
                start = index << 32
                for part in file_batches(storage, path, schema.names, READ_BATCH):
                    table = conform(pa.Table.from_batches([part]), schema)
                    rows = table.num_rows
                    if start + rows >= (index + 1) << 32:
                        raise RuntimeError(f"input file {path} has 2**32 rows or more")
                    table = table.append_column("_row", pa.array(np.arange(start, start + rows, dtype=np.int64)))
                    table = table.append_column("_crawl", pa.repeat(pa.scalar(crawl), rows))
                    table = table.append_column("_shard", pa.repeat(pa.scalar(shard), rows))
                    start += rows
                    yield from (extra(table) if extra is not None else table).to_batches()

    paths = spark.createDataFrame(files, "index long, path string")
    return paths.repartition(max(1, len(files)), "path").mapInArrow(read, from_arrow_schema(full))


def _language_groups(languages, per_language: bool, rows: int) -> list[tuple[str | None, np.ndarray]]:
    """(language, row indices) groups of a ``language`` column: one group of every row (language None) unless
    ``per_language``."""
    return rows_by_language(languages) if per_language else [(None, np.arange(rows))]


def words_of(texts: pa.Array, language: str | None) -> pa.ListArray:
    """The words MinHash shingles: the language's word tokens, else (None) letter/digit runs."""
    if language is None:
        return normalized_words(texts)
    from operators.filters.word_tokenizers import word_tokenizer

    return tokenized_words(texts, word_tokenizer(language))


def signature_columns(exact: dict, minhash: dict):
    """The ``extra`` function adding ``_blank``, ``_exact`` and ``_bands``, and their fields.

    ``_blank``: the text is null, empty or whitespace only (such rows are left out of dedup);
    ``_exact``: the text key; ``_bands``: LSH keys, null for a text without words (never a near duplicate).
    With ``minhash.per_language`` the words are the document language's and every band key is salted with
    the language, so a bucket never holds two languages.
    """
    fields = [pa.field("_blank", pa.bool_()), pa.field("_exact", pa.string()),
              pa.field("_bands", pa.list_(pa.int64()))]

    def add(table: pa.Table) -> pa.Table:
        text = table.column("text").combine_chunks()
        blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
        keys = text_keys(text, bits=exact["hash_bits"], nfc=exact["nfc"],
                         fold_whitespace=exact["fold_whitespace"], lowercase=exact["lowercase"])
        bands = np.empty((table.num_rows, minhash["bands"]), dtype=np.int64)
        empty = np.empty(table.num_rows, dtype=bool)
        groups = _language_groups(table.column("language") if minhash["per_language"] else None,
                                  minhash["per_language"], table.num_rows)
        for language, rows in groups:
            words = words_of(text.take(pa.array(rows)), language)
            group = bands_of_words(words, minhash["ngram"], minhash["bands"], minhash["rows"], minhash["seed"])
            empty[rows] = wordless(group, minhash["bands"], minhash["rows"])
            if minhash["per_language"]:
                group = (group.view(np.uint64) ^ language_salt(language)).view(np.int64)
            bands[rows] = group
        offsets = pa.array(np.arange(0, bands.size + 1, minhash["bands"], dtype=np.int32))
        mask = pa.array(empty)
        table = table.append_column("_blank", blank).append_column("_exact", keys)
        return table.append_column("_bands", pa.ListArray.from_arrays(offsets, pa.array(bands.ravel()), mask=mask))

    return add, tuple(fields)


def _first_per_group(df: DataFrame, group: str, order: list, method: str) -> DataFrame:
    """Rows beyond the first of each group (by ``order``, then ``id``, then ``_row``) as duplicates of that first row.

    ``df`` has ``_row``, ``id`` and ``shard``.
    """
    w = Window.partitionBy(group).orderBy(*order, "id", "_row")
    ranked = (df.withColumn("_rank", F.row_number().over(w))
              .withColumn("_first", F.first(F.struct("_row", "id", "shard")).over(w)))
    return ranked.where("_rank > 1").select(
        "_row", "id", "shard", F.col("_first._row").alias("_kept"), F.col("_first.id").alias("kept_id"),
        F.col("_first.shard").alias("kept_shard"), F.lit(method).alias("method"))


def url_duplicates(meta: DataFrame) -> DataFrame:
    """Captures of the same URL: the latest capture (then smallest id) is kept."""
    return _first_per_group(meta.where(F.col("url").isNotNull()), "url", [F.col("date").desc_nulls_last()], "url")


def exact_duplicates(meta: DataFrame) -> DataFrame:
    """Same normalised text: the earliest capture (then smallest id) is kept."""
    return _first_per_group(meta, "_exact", [F.col("date").asc_nulls_last()], "exact")


def candidate_edges(meta: DataFrame, max_pairs_bucket: int) -> DataFrame:
    """Candidate pairs from LSH buckets holding two or more documents.

    A bucket of up to ``max_pairs_bucket`` documents gives all its pairs, so verification sees
    every pair that collided. A larger bucket (boilerplate shared by thousands of pages) gives a
    star instead, each member to the bucket's smallest row: linear in its size, so no bucket can
    blow up memory, and connectivity (all that components need) is kept. Vertices are ``_row``.
    """
    bands = meta.select("_row", F.posexplode("_bands").alias("band", "key"))
    buckets = bands.groupBy("band", "key").agg(F.min("_row").alias("anchor"), F.count("*").alias("n")).where("n > 1")
    members = bands.join(buckets, ["band", "key"])
    small = members.where(F.col("n") <= max_pairs_bucket).select("band", "key", "_row")
    pairs = (small.alias("a").join(small.alias("b"), ["band", "key"]).where(F.col("a._row") < F.col("b._row"))
             .select(F.col("b._row").alias("src"), F.col("a._row").alias("dst")))
    stars = (members.where((F.col("n") > max_pairs_bucket) & (F.col("_row") != F.col("anchor")))
             .select(F.col("_row").alias("src"), F.col("anchor").alias("dst")))
    return pairs.union(stars).distinct()


def _shingles(table: pa.Table, column: str, ngram: int, per_language: bool) -> list[np.ndarray]:
    """Shingle sets of ``table[column]``, each with the words of the language in ``<column>_language``."""
    out: list = [None] * table.num_rows
    languages = table.column(f"{column}_language") if per_language else None
    for language, rows in _language_groups(languages, per_language, table.num_rows):
        texts = table.column(column).combine_chunks().take(pa.array(rows))
        for i, shingles in zip(rows.tolist(), word_shingle_sets(words_of(texts, language), ngram), strict=True):
            out[i] = shingles
    return out


def verified_edges(edges: DataFrame, texts: DataFrame, ngram: int, threshold: float,
                   per_language: bool = False) -> DataFrame:
    """Candidate edges whose true Jaccard similarity of word ``ngram`` shingles is at least ``threshold``.

    ``texts`` has ``_row`` and ``text`` (and ``language``, ``per_language``: then a pair of two languages is
    never an edge, and each text is split with its language's words).
    """
    extra = ["language"] if per_language else []
    side = {end: texts.select(F.col("_row").alias(f"{'src' if end == 'a' else 'dst'}"), F.col("text").alias(end),
                              *[F.col(c).alias(f"{end}_{c}") for c in extra]) for end in ("a", "b")}
    pairs = edges.join(side["a"], "src").join(side["b"], "dst")
    if per_language:
        pairs = pairs.where(F.col("a_language").eqNullSafe(F.col("b_language")))

    def score(batches):
        for whole in batches:  # Spark sends up to 10,000 pairs at once; shingled VERIFY_BATCH at a time
            for start in range(0, whole.num_rows, VERIFY_BATCH):
                batch = whole.slice(start, VERIFY_BATCH)
                table = pa.Table.from_batches([batch])
                a = _shingles(table, "a", ngram, per_language)
                b = _shingles(table, "b", ngram, per_language)
                sims = pa.array([jaccard(x, y) for x, y in zip(a, b, strict=True)], pa.float64())
                yield pa.RecordBatch.from_arrays([batch.column("src"), batch.column("dst"), sims],
                                                 names=["src", "dst", "jaccard"])

    columns = ["src", "dst", "a", "b"] + [f"{end}_language" for end in ("a", "b") if per_language]
    scored = pairs.select(*columns).mapInArrow(score, "src long, dst long, jaccard double")
    return scored.where(F.col("jaccard") >= threshold).select("src", "dst")


def fuzzy_duplicates(meta: DataFrame, edges: DataFrame) -> DataFrame:
    """Documents in a connected component of ``edges`` other than its kept one (earliest, then smallest id)."""
    components = connected_components(edges).select(F.col("vertex").alias("_row"), "component")
    members = components.join(meta.select("_row", "id", "date", "shard"), "_row")
    return _first_per_group(members, "component", [F.col("date").asc_nulls_last()], "fuzzy")


def write_shards(kept: DataFrame, storage: Storage, output: str, schema: pa.Schema, compression: str) -> list:
    """Write each shard's kept rows to ``<output>/<crawl>/<shard>.parquet``; return (crawl, shard, rows)."""

    def write(batches):
        current, writer, staging, target, rows, done = None, None, None, None, 0, []

        def close():
            writer.close()
            storage.commit(staging, target)
            done.append((*current, rows))

        try:
            for batch in batches:
                table = pa.Table.from_batches([batch])
                keys = list(zip(table.column("_crawl").to_pylist(), table.column("_shard").to_pylist(),
                                strict=True))
                start = 0
                while start < len(keys):
                    end = start
                    while end < len(keys) and keys[end] == keys[start]:
                        end += 1
                    if keys[start] != current:
                        if writer is not None:
                            close()
                        current, rows = keys[start], 0
                        target = join(output, current[0], f"{current[1]}.parquet")
                        staging = storage.staging_path(target)
                        writer = pq.ParquetWriter(staging, schema, compression=compression)
                    writer.write_table(conform(table.slice(start, end - start), schema))
                    rows += end - start
                    start = end
            if writer is not None:
                close()
        except BaseException:
            if writer is not None:
                writer.close()
                discard(staging)
            raise
        if done:
            crawls, shards, counts = zip(*done, strict=True)
            yield pa.RecordBatch.from_arrays([pa.array(crawls), pa.array(shards), pa.array(counts, pa.int64())],
                                             names=["crawl", "shard", "rows"])

    ordered = kept.repartition("_crawl", "_shard").sortWithinPartitions("_crawl", "_shard", "_row")
    return ordered.mapInArrow(write, "crawl string, shard string, rows long").collect()


def write_table_parts(df: DataFrame, storage: Storage, folder: str) -> int:
    """Write ``df`` as ``<folder>/part-<partition>.parquet`` files; return the row count."""
    def write(batches):
        tables = [pa.Table.from_batches([b]) for b in batches]
        if not tables:
            return
        table = pa.concat_tables(tables)
        part = join(folder, f"part-{TaskContext.get().partitionId():05d}.parquet")
        storage.write_atomic(part, lambda out: pq.write_table(table, out, compression="zstd"))
        yield pa.RecordBatch.from_arrays([pa.array([table.num_rows], pa.int64())], names=["rows"])

    return sum(r["rows"] for r in df.mapInArrow(write, "rows long").collect())


def cluster_sizes(dups: DataFrame) -> DataFrame:
    """``_row``, ``minhash_cluster_size`` of each kept document that others duplicate: the documents it stands
    for, itself included, by every method (a row removed by one method may be kept by an earlier one whose
    kept row a later method removes, so each removal is followed to the row finally kept)."""
    up = dups.select(F.col("_row").alias("_via"), F.col("_kept").alias("_up"))
    final = dups.select("_row", "_kept")
    for _ in range(2):  # at most three methods in a row (url, exact, fuzzy)
        final = (final.join(up, F.col("_kept") == F.col("_via"), "left")
                 .select("_row", F.coalesce("_up", "_kept").alias("_kept")))
    return final.groupBy("_kept").count().select(F.col("_kept").alias("_row"),
                                                 (F.col("count") + 1).alias("minhash_cluster_size"))


def method_counts(dups: DataFrame) -> dict[str, tuple[int, int, int]]:
    """Per method: (documents removed, clusters, size of its largest cluster, kept document included), in one
    Spark job: a few rows reach the driver, never a row per cluster."""
    clusters = dups.groupBy("method", "_kept").count()
    rows = clusters.groupBy("method").agg(F.sum("count"), F.count("*"), F.max("count")).collect()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]) + 1) for r in rows}
