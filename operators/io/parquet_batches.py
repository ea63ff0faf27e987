"""Reading a Parquet file a batch at a time, local or on S3, with memory that follows the batch, not the file.

Our shards are written as one row group, so pyarrow's default (pre-buffering every column chunk read)
holds a whole shard's columns at once. A small file is still fetched whole: on S3 that is one coalesced
request instead of one per column.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from operators.io.storage import Storage

READ_BUFFER = 8 << 20  # bytes read at a time from a column of a big file (one ranged GET on S3)
WHOLE_READ = 32 << 20  # up to this many compressed bytes (the columns read) are fetched at once, coalesced


def compressed_bytes(meta: pq.FileMetaData, columns: list[str]) -> int:
    """The compressed bytes of ``columns`` over every row group."""
    groups = (meta.row_group(g) for g in range(meta.num_row_groups))
    chunks = (group.column(c) for group in groups for c in range(group.num_columns))
    return sum(chunk.total_compressed_size for chunk in chunks if chunk.path_in_schema.split(".")[0] in columns)


def file_batches(storage: Storage, uri: str, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """``uri``'s record batches of ``columns`` (those it has). A file whose columns hold up to ``WHOLE_READ``
    compressed bytes is fetched in as few requests as Arrow can coalesce; a bigger one is read as a stream,
    ``READ_BUFFER`` (or one bigger page) per column at a time. A file that cannot be read raises
    ``RuntimeError`` naming it."""
    fs, inner = storage.filesystem(uri)
    try:
        with fs.open_input_file(inner) as handle:
            meta = pq.read_metadata(handle)
            wanted = [c for c in columns if c in meta.schema.to_arrow_schema().names]
            whole = compressed_bytes(meta, wanted) <= WHOLE_READ
            parquet = pq.ParquetFile(handle, metadata=meta, pre_buffer=whole, buffer_size=0 if whole else READ_BUFFER)
            yield from parquet.iter_batches(batch_size=batch_size, columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise RuntimeError(f"cannot read input file {uri}: {err}") from err
