"""CSV → Parquet ingestion of SNDS deliveries: typed lake, quarantine with reasons, manifest,
quality report. The entry point is :func:`ingest_delivery`."""

from __future__ import annotations

from .pipeline import FileResult, IngestResult, Status, ingest_delivery

__all__ = ["FileResult", "IngestResult", "Status", "ingest_delivery"]
