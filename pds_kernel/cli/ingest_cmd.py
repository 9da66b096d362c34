"""``pds ingest``: load a delivery into the lake."""

from __future__ import annotations

from pathlib import Path

import typer


def ingest(ctx: typer.Context, directory: Path = typer.Argument(..., help="Delivery directory.")) -> None:
    """Load an SNDS delivery (CSV) into the lake (typed Parquet)."""
    raise NotImplementedError
