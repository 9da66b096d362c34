"""The quality report of the lake after an ingest: ``report.json`` for machines, ``report.html``
for people (one self-contained page: no script, no external asset).

It describes the lake as the manifest records it (not only this run's files), so two runs that
build the same lake (local or Dask, clean or resumed after a crash) give the same figures:

* this run's files (status, counts, reasons) and per-table totals;
* care dates between 1900 and the SNDS's start, and after their file's period, per column
  (loaded, counted: see :mod:`.stats`);
* null rates per column, and for dates the share of the SNDS "missing" date 1600-01-01 (counted
  when each file was parsed and kept in the manifest, see :mod:`.stats`);
* quarantine reasons per table, check and column, with counts and a few examples;
* referential integrity between tables (claims without a beneficiary, stays whose NIR_ANO_17 is
  not a known BEN_NIR_PSA, dispensed drugs missing from IR_PHA_R...);
* monthly volumes per table, drawn as inline SVG bar charts.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import polars as pl

from ..snds.catalogue import ingestible_names, ingestible_table
from .manifest import Manifest, write_atomic
from .stats import SNDS_START, ColumnStats

#: Examples kept per quarantine reason, and characters kept of each raw line.
EXAMPLES = 3
RAW_CHARS = 160
#: Child rows the integrity check compares at once (files are grouped up to it): the report's
#: memory stays bounded by it instead of growing with the child table.
CHECK_ROWS = 150_000
LATEST = "latest"


@dataclass(frozen=True)
class Link:
    """Rows of ``child`` whose ``child_columns`` have no match in ``parent``'s ``parent_columns``."""

    name: str
    child: str
    child_columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    meaning: str


LINKS = (
    Link("claims_without_beneficiary", "ER_PRS_F", ("BEN_NIR_PSA", "BEN_RNG_GEM"),
         "IR_BEN_R", ("BEN_NIR_PSA", "BEN_RNG_GEM"),
         "claims whose beneficiary (BEN_NIR_PSA, BEN_RNG_GEM) is missing from IR_BEN_R"),
    Link("stays_without_beneficiary", "T_MCOaaC", ("NIR_ANO_17",), "IR_BEN_R", ("BEN_NIR_PSA",),
         "PMSI stays whose NIR_ANO_17 is not a BEN_NIR_PSA of IR_BEN_R"),
    Link("drugs_without_referential", "ER_PHA_F", ("PHA_PRS_C13",), "IR_PHA_R", ("PHA_CIP_C13",),
         "dispensed drug lines whose CIP13 code is missing from IR_PHA_R"),
    Link("pharmacy_without_claim", "ER_PHA_F", ("DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD",
                                                "FLX_EMT_TYP", "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM",
                                                "REM_TYP_AFF"),
         "ER_PRS_F", ("DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP",
                      "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF"),
         "pharmacy lines whose 9 join keys match no claim of ER_PRS_F"),
    Link("deaths_without_beneficiary", "KI_CCI_R", ("BEN_IDT_ANO",), "IR_BEN_R", ("BEN_IDT_ANO",),
         "causes of death whose BEN_IDT_ANO is not in IR_BEN_R"),
)


def _scan(lake: Path, manifest: Manifest, table: str) -> pl.LazyFrame | None:
    entries = manifest.of_table(table)
    if not entries:
        return None
    return pl.scan_parquet([lake / e.parquet for e in entries])


def _column_stats(lake: Path, entries: list) -> ColumnStats:
    """Null and missing-date counts of a table's files: from the manifest, or (for files recorded
    without them, by an older version) from the files themselves."""
    total = ColumnStats(entries[0].table)
    unrecorded = []
    for e in entries:
        if e.nulls is None or e.missing_dates is None:
            unrecorded.append(lake / e.parquet)
            total.merge(ColumnStats(e.table, unknown_codes=dict(e.unknown_codes or {})))
            continue
        total.merge(ColumnStats(e.table, dict(e.nulls), dict(e.missing_dates), dict(e.unknown_codes or {}),
                                dict(e.early_dates or {}), dict(e.late_dates or {})))
    if unrecorded:
        total.add(pl.scan_parquet(unrecorded))
    return total


def build_table_stats(lake: Path, manifest: Manifest) -> dict:
    """Per table: files and row counts from the manifest (rows in the lake from the Parquet
    footers), null rates and missing dates from the figures recorded with each file."""
    stats = {}
    for name in _loaded_tables(manifest):
        table = ingestible_table(name)
        entries = manifest.of_table(name)
        if not entries:
            continue
        rows = _scan(lake, manifest, name).select(pl.len()).collect().item()
        figures = _column_stats(lake, entries)
        columns = {}
        for c in table.columns:
            nulls = figures.nulls[c.name]
            info = {"nulls": nulls, "null_rate": round(nulls / rows, 6) if rows else 0.0}
            if c.type == "date":
                missing = figures.missing_dates[c.name]
                info.update(missing_dates=missing, missing_date_rate=round(missing / rows, 6) if rows else 0.0)
            if c.name in figures.early_dates:
                info.update(early_dates=figures.early_dates[c.name],
                            late_dates=figures.late_dates.get(c.name, 0))
            if c.nomenclature is not None:
                info.update(nomenclature=":".join(c.nomenclature),
                            unknown_codes=figures.unknown_codes.get(c.name, 0))
            columns[c.name] = info
        stats[name] = {
            "group": table.group, "files": len(entries),
            "rows_read": sum(e.rows_read for e in entries),
            "rows_loaded": sum(e.rows_loaded for e in entries),
            "rows_quarantined": sum(e.rows_quarantined for e in entries),
            "rows_in_lake": rows, "columns": columns,
        }
    return stats


def _loaded_tables(manifest: Manifest) -> list[str]:
    """Tables with at least one file in the lake, in load order (profile, then catalogue)."""
    loaded = {e.table for e in manifest.entries.values()}
    return [name for name in ingestible_names() if name in loaded]


def build_catalogue_links(manifest: Manifest) -> list[Link]:
    """The foreign keys declared by the published schema between tables both in the lake (those
    the profile's :data:`LINKS` already check left out)."""
    loaded = set(_loaded_tables(manifest))
    known = {(link.child, link.parent) for link in LINKS}
    links = []
    for name in _loaded_tables(manifest):
        table = ingestible_table(name)
        for columns, parent, parent_columns in table.foreign_keys:
            if parent not in loaded or (name, parent) in known or parent == name:
                continue
            parent_names = set(ingestible_table(parent).column_names)
            if not set(columns) <= set(table.column_names) or not set(parent_columns) <= parent_names:
                continue
            links.append(Link(f"fk_{name}_{parent}", name, columns, parent, parent_columns,
                              f"{name} rows whose foreign key ({', '.join(columns)}) matches no row of {parent} "
                              "(foreign key of the published schema)"))
    return links


def build_monthly_volumes(manifest: Manifest) -> dict[str, dict[str, int]]:
    volumes: dict[str, dict[str, int]] = {}
    for entry in sorted(manifest.entries.values(), key=lambda e: (e.table, e.month or "")):
        if entry.month is not None:
            table = volumes.setdefault(entry.table, {})
            table[entry.month] = table.get(entry.month, 0) + entry.rows_loaded
    return volumes


def build_quarantine_summary(lake: Path, manifest: Manifest) -> list[dict]:
    from .quarantine import read_quarantines

    quarantined = {str(lake / e.quarantine): e for e in manifest.entries.values() if e.quarantine}
    if not quarantined:
        return []
    files = pl.DataFrame({"path": list(quarantined), "table": [e.table for e in quarantined.values()],
                          "file": [e.name for e in quarantined.values()]})
    rows = (read_quarantines(list(quarantined)).join(files, on="path", how="left")
            .with_columns(pl.col("column").fill_null("")))
    summary = []
    for (table, check, column), group in rows.group_by(["table", "check", "column"], maintain_order=True):
        examples = group.sort(["file", "line"]).head(EXAMPLES)
        summary.append({
            "table": table, "check": check, "column": column, "count": group.height,
            "examples": [{"file": e["file"], "line": e["line"], "reason": e["reason"],
                          "raw": (e["raw"] or "")[:RAW_CHARS]} for e in examples.iter_rows(named=True)],
        })
    summary.sort(key=lambda s: (s["table"], -s["count"], s["check"], s["column"]))
    return summary


def build_integrity(lake: Path, manifest: Manifest) -> list[dict]:
    """Per link, the child rows whose key matches no parent row (a key with a null never matches).

    A key of several columns is compared through one 64-bit hash of its values on each side:
    ER_PRS_F's 9 DCIR join keys, checked for four tables, are held as one hash column instead of
    nine (the report's peak memory and most of its time were that join). Two different keys with
    the same hash would count a missing row as present: with N parent keys, the chance for a given
    missing row is about N / 2**64 (4e-14 for a million claims).

    The parent's keys of a link are read once; the child's files are checked in groups of about
    :data:`CHECK_ROWS` rows, so the report holds a group's keys at once instead of the whole
    table's (the keys of a year of ER_PRS_F checked against IR_BEN_R added ~20 MiB at the end of a
    whole delivery's ingest)."""
    results = []
    links = [link for link in LINKS + tuple(build_catalogue_links(manifest))
             if manifest.of_table(link.child) and manifest.of_table(link.parent)]
    uses = Counter((link.parent, link.parent_columns, link.child_columns) for link in links)
    read: dict[tuple, pl.DataFrame] = {}  # parent keys, read once for the links that check them
    for link in links:
        children = _groups(lake, manifest.of_table(link.child))
        on = list(link.child_columns)
        # no unique() on the parent's keys: an anti-join only asks whether a match exists
        keys = _scan(lake, manifest, link.parent).select(
            [pl.col(p).alias(c) for p, c in zip(link.parent_columns, on)])
        # published types that disagree are compared as text
        as_text = keys.collect_schema() != pl.scan_parquet(children[0][0]).select(on).collect_schema()
        source = (link.parent, link.parent_columns, link.child_columns)
        if (source, as_text) not in read:
            read[source, as_text] = _comparable(keys, on, as_text).collect()
        parent_keys = read[source, as_text].lazy()
        uses[source] -= 1
        if not uses[source]:
            del read[source, as_text]
        checked = missing = 0
        for group in children:
            child_keys = _comparable(pl.scan_parquet(group).select(on), on, as_text)
            rows, unmatched = pl.collect_all([
                pl.scan_parquet(group).select(pl.len()),
                child_keys.join(parent_keys, on=child_keys.collect_schema().names(), how="anti",
                                nulls_equal=False).select(pl.len())])
            checked, missing = checked + rows.item(), missing + unmatched.item()
        results.append({
            "name": link.name, "meaning": link.meaning,
            "child": f"{link.child}({', '.join(link.child_columns)})",
            "parent": f"{link.parent}({', '.join(link.parent_columns)})",
            "rows": checked, "missing": missing, "rate": round(missing / checked, 6) if checked else 0.0,
        })
    return results


def _groups(lake: Path, entries: list) -> list[list[Path]]:
    """The files of ``entries`` in groups of about :data:`CHECK_ROWS` rows (by the ledger's counts)."""
    groups: list[list[Path]] = [[]]
    rows = 0
    for entry in entries:
        if groups[-1] and rows + entry.rows_loaded > CHECK_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(lake / entry.parquet)
        rows += entry.rows_loaded
    return groups


def _comparable(keys: pl.LazyFrame, on: list[str], as_text: bool) -> pl.LazyFrame:
    """``keys`` as the anti-join compares them: as text when ``as_text``, and a key of several
    columns as one hash (:func:`_key_hash`)."""
    if as_text:
        keys = keys.select(pl.all().cast(pl.String))
    return keys.select(_key_hash(on)) if len(on) > 1 else keys


_KEY_HASH = "__key_hash"


def _key_hash(columns: list[str]) -> pl.Expr:
    """One hash of the key ``columns`` per row; null when any of them is null (never matched)."""
    return (pl.when(pl.any_horizontal(pl.col(columns).is_null())).then(None)
            .otherwise(pl.struct(columns).hash()).alias(_KEY_HASH))


def render_bars_svg(title: str, values: dict[str, int], width: int = 400, height: int = 150) -> str:
    """A bar chart of ``values`` (label → count) as inline SVG. Pure: returns text."""
    if not values:
        return ""
    labels = list(values)
    top = max(values.values()) or 1
    left, bottom, pad = 56, 34, 6
    inner_w, inner_h = width - left - pad, height - bottom - 20
    bar = inner_w / len(labels)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="13" font-size="12" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" y1="{20 + inner_h}" x2="{width - pad}" y2="{20 + inner_h}" stroke="#555"/>',
             f'<text x="{left - 4}" y="26" font-size="10" text-anchor="end">{top:,}</text>',
             f'<text x="{left - 4}" y="{20 + inner_h}" font-size="10" text-anchor="end">0</text>']
    step = max(1, -(-len(labels) // 6))
    for i, label in enumerate(labels):
        h = inner_h * values[label] / top
        x = left + i * bar
        parts.append(f'<rect x="{x + 1:.1f}" y="{20 + inner_h - h:.1f}" width="{max(bar - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="#3b6ea8"><title>{escape(label)}: {values[label]:,}</title></rect>')
        if i % step == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 14}" font-size="9" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def build_report(run_id: str, lake: Path, manifest: Manifest, result) -> dict:
    """Every figure of the report, as plain data (what ``report.json`` holds)."""
    files = [asdict(f) for f in result.files]
    return {
        "format": 1,
        "run": run_id,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "lake": str(lake),
        "run_files": files,
        "run_totals": result.totals(),
        "run_status": {s: sum(f["status"] == s for f in files) for s in ("loaded", "skipped", "refused", "empty", "corrected")},
        "tables": build_table_stats(lake, manifest),
        "monthly_volumes": build_monthly_volumes(manifest),
        "quarantine": build_quarantine_summary(lake, manifest),
        "integrity": build_integrity(lake, manifest),
        "snds_start": SNDS_START.isoformat(),
    }


def render_html(report: dict) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape  # at the end of a run, after its peak

    env = Environment(loader=PackageLoader("pds_kernel.ingest", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    charts = {table: render_bars_svg(f"{table}: rows loaded per month", volumes)
              for table, volumes in report["monthly_volumes"].items()}
    return env.get_template("report.html.j2").render(report=report, charts=charts)


def write_report(reports: Path, run_id: str, lake: Path, manifest: Manifest, result) -> tuple[Path, Path]:
    """Write ``reports/<run-id>/report.{json,html}`` and copy them to ``reports/latest/``."""
    report = build_report(run_id, lake, manifest, result)
    out = reports / run_id
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    write_atomic(json_path, json.dumps(report, indent=1, ensure_ascii=False, default=str).encode("utf-8"))
    write_atomic(html_path, render_html(report).encode("utf-8"))
    latest = reports / LATEST
    tmp = reports / f".{LATEST}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp)
    shutil.rmtree(latest, ignore_errors=True)
    tmp.rename(latest)
    return json_path, html_path
