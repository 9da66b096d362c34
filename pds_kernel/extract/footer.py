"""What an extract's Parquet file holds besides its columns: its footer, read for the conformity check.

A Parquet footer carries text of its own: key-value metadata (free keys and values), the writer's
name (``created_by``), the schema that Arrow keeps in it (``ARROW:schema``, with metadata of its
own on the schema and on every field), and each column chunk's statistics (minimum and maximum).
A reader of the file sees all of it, so an identifier written there reaches the project as surely
as one in a column. The builder writes only ``ARROW:schema`` (without metadata) and polars' writer
name; :func:`footer_faults` says what else a file holds (never the text itself), and
:func:`footer_texts` gives every text of the footer for the identifier search of the columns.

Not read: bytes of the file that the footer does not reference (between or after column chunks).
The SHA-256 of every file, recorded at the build, is what stands against such bytes after it.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: The one key-value entry the builder writes (polars: the Arrow schema, base64).
ARROW_SCHEMA = b"ARROW:schema"
#: polars' writer name: no room for an identifier in it.
CREATED_BY = re.compile(r"^Polars \(python\) version [0-9][0-9a-z.\-]{0,30} \(build [0-9a-f]{0,64}\)$")


def _has_metadata(field: pa.Field) -> bool:
    if field.metadata:
        return True
    kind = field.type
    children = [kind.field(i) for i in range(kind.num_fields)] if kind.num_fields else []
    return any(_has_metadata(child) for child in children)


def footer_faults(path: Path) -> list[str]:
    """What the footer of ``path`` holds that the builder never writes (short descriptions)."""
    meta = pq.ParquetFile(path).metadata
    faults = []
    if not CREATED_BY.fullmatch(meta.created_by or ""):
        faults.append("a writer name that is not polars'")
    extra = sorted(k for k in (meta.metadata or {}) if k != ARROW_SCHEMA)
    if extra:
        faults.append(f"{len(extra)} key-value metadata entr{'y' if len(extra) == 1 else 'ies'}")
    encoded = (meta.metadata or {}).get(ARROW_SCHEMA)
    if encoded is not None:
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded, validate=True)))
        except (ValueError, pa.ArrowException):
            faults.append("an Arrow schema that does not decode")
        else:
            if schema.metadata or any(_has_metadata(f) for f in schema):
                faults.append("metadata in its Arrow schema")
    return faults


def footer_texts(path: Path) -> list[tuple[str | None, str]]:
    """Every text of the footer of ``path``, as ``(column, text)``: metadata keys and values and the
    writer's name (column None), the minimum and maximum of every text column chunk (its column:
    a statistic that is one of the column's values is searched with them)."""
    meta = pq.ParquetFile(path).metadata
    texts: list[tuple[str | None, str]] = [(None, meta.created_by or "")]
    for key, value in (meta.metadata or {}).items():  # the Arrow schema: checked by footer_faults
        texts.append((None, key.decode("utf-8", "replace")))
        if key != ARROW_SCHEMA:
            texts.append((None, value.decode("utf-8", "replace")))
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            stats = chunk.statistics
            if stats is not None and stats.has_min_max:
                for value in (stats.min, stats.max):
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        texts.append((chunk.path_in_schema, value))
    return [(column, text) for column, text in texts if text]
