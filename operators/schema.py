"""The one document schema every stage reads and writes (see DESIGN.md, "The document record")."""

import pyarrow as pa

SCHEMA_VERSION = "2"
SCHEMA_METADATA = {b"cc_refinery.schema_version": SCHEMA_VERSION.encode()}

DOCUMENT_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("warc_record_id", pa.string()),
    pa.field("text", pa.string()),
    pa.field("url", pa.string()),
    pa.field("crawl", pa.string()),
    pa.field("date", pa.string()),
    pa.field("source", pa.string()),
    pa.field("source_offset", pa.int64()),
    pa.field("language", pa.string()),
    pa.field("language_score", pa.float32()),
    pa.field("filter_reason", pa.string()),
    pa.field("synth_task", pa.string()),
    pa.field("synth_model", pa.string()),
    pa.field("synth_prompt", pa.string()),
    pa.field("parent_id", pa.string()),
]

# Columns the WARC/WET reader adds for extraction; the extract operator consumes and drops them.
RAW_FIELDS = [
    pa.field("raw_html", pa.binary()),
    pa.field("raw_content_type", pa.string()),
]


def output_schema(signal_fields: dict[str, pa.DataType]) -> pa.Schema:
    """The document schema plus the signal columns the recipe's operators declare."""
    fields = DOCUMENT_FIELDS + [pa.field(name, typ) for name, typ in signal_fields.items()]
    return pa.schema(fields, metadata=SCHEMA_METADATA)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder ``table`` to ``schema``, adding null columns for fields it lacks and dropping the rest."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
