"""Time to check a 10,000-cell and a 1,000,000-cell count table, and a 5,000-row declared table
with every rule on.

Ours: the gate's full ``check_file`` (read CSV, pre-gates, find labels, small cells, zeros, margins,
text cells). Peers in the same run: a plain pandas computation of the small-cell rule alone on the
same file (the least any checker must do), and ACRO's own ``crosstab`` check on microdata producing
a 10,000-cell table (ACRO checks while building the table, from the microdata). The all-rules row
declares the table (labels, counts, a magnitude column with its contributions, a total row and a
total column), gives the gate 200,000 project PERSON_IDs and three released tables of the same
shape (differencing), so every rule runs on every cell: it must stay under 1 s for 1M cells.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd


def _table(path: Path, rows: int, cols: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 200, size=(rows, cols))
    frame = pd.DataFrame(values, columns=[f"c{j}" for j in range(cols)])
    frame.insert(0, "group", [f"g{i}" for i in range(rows)])
    frame.to_csv(path, index=False)
    return path


def _timed(fn):
    """(result, seconds, peak MB of Python allocations). Timed without tracing (tracemalloc slows
    Python code several times), then run once more under tracemalloc for the peak."""
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, elapsed, peak / 1e6


def _pandas_rule(path: Path, threshold: int = 10) -> int:
    frame = pd.read_csv(path)
    values = frame.iloc[:, 1:].to_numpy()
    return int(((values > 0) & (values < threshold)).sum())


def _acro_check(cells: int) -> float:
    from pds_kernel import sdc
    from pds_kernel.airlock.checks import Thresholds

    side = int(cells ** 0.5)
    rng = np.random.default_rng(1)
    n = cells * 20
    micro = pd.DataFrame({"a": rng.integers(0, side, n), "b": rng.integers(0, side, n)})
    session = sdc.Session(Thresholds())
    start = time.perf_counter()
    session.crosstab(micro.a, micro.b)
    return time.perf_counter() - start


def _all_rules(out_dir: Path, rows: int, cols: int):
    """(path, context, known ids, released tables) of a declared table that exercises every rule."""
    from pds_kernel.airlock.checks import Released, declaration, tables

    rng = np.random.default_rng(2)
    counts = rng.integers(10, 500, size=(rows, cols))
    names = [f"c{j}" for j in range(cols)]
    frame = pd.DataFrame(counts, columns=names)
    # category codes, not row numbers (a column numbering the rows is a microdata signal)
    frame.insert(0, "group", [f"C{code:05d}" for code in np.sort(rng.choice(100_000, rows, replace=False))])
    frame["Total"] = counts.sum(axis=1)
    tops = rng.integers(1, 50, size=(rows, 2)).astype(float)
    frame["amount"] = tops.sum(axis=1) * 20
    total = frame.drop(columns="group").sum().to_frame().T
    total.insert(0, "group", "Total")
    frame = pd.concat([frame, total], ignore_index=True)
    path = out_dir / "airlock_all_rules.csv"
    frame.to_csv(path, index=False)
    contributions = [[40, float(a), [float(t[0]), float(t[1])]] for a, t in zip(frame["amount"], tops)]
    contributions.append([40 * rows, float(frame["amount"].iloc[-1]), [50.0, 49.0]])
    declared = {"labels": ["group"], "counts": names + ["Total"], "magnitudes": {"amount": "sum"},
                "contributions": {"amount": contributions}}
    known = frozenset(f"{i:012x}" for i in rng.integers(0, 2**48, 200_000))
    parsed = declaration.parse(declared)
    released = tuple(Released(f"{k:032x}", path.name, tables.analyse(frame.assign(c0=frame["c0"] + k), parsed))
                     for k in (20, 40, 60))
    return path, {"tables": {path.name: declared}}, known, released


def _submission(root: Path, path: Path, context: dict) -> float:
    """Best of 3: the whole submission of ``path`` through the gate's service (stage, SHA-256, every
    check with the project's released tables and PERSON_IDs, the request's rows in the database)."""
    import io
    from datetime import date

    from pds_kernel.airlock.service import AirlockService
    from pds_kernel.registry import Registry, Role
    from pds_kernel.runtime import Runtime
    from pds_kernel.settings import Paths, Settings

    paths = Paths(**{name: root / name for name in Paths.__dataclass_fields__})
    for name in Paths.__dataclass_fields__:
        getattr(paths, name).mkdir(parents=True, exist_ok=True)
    runtime = Runtime(Settings(paths=paths))
    try:
        registry = Registry.from_runtime(runtime)
        registry.upsert_user("bench", "alice")
        registry.upsert_project("bench", "p-bench", title="bench", start_date=date(2020, 1, 1),
                                end_date=date(2099, 12, 31))
        registry.add_member("bench", "p-bench", "alice", Role.RESEARCHER, date(2099, 12, 31))
        service = AirlockService(runtime, registry=registry)
        data = path.read_bytes()
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            view = service.create("alice", "p-bench", [(path.name, io.BytesIO(data))], "bench", context)
            best = min(best, time.perf_counter() - start)
            failed = {rule for rule, status in view.files[0].check["rules"].items() if status != "pass"}
            assert failed <= {"preview"}, view.files[0].check  # larger than the page shows: by design
        return best
    finally:
        runtime.close()


def run(out_dir: Path, quick: bool) -> dict:
    from pds_kernel.airlock.checks import Thresholds, check_file

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    # 1M cells within the pre-gate's default limit of 5,000 rows per table file
    sizes = [("10k", 1000, 10), ("1M", 5_000, 200)]
    for label, nrows, ncols in sizes:
        path = _table(out_dir / f"airlock_{label}.csv", nrows, ncols)
        cells = nrows * ncols
        result, ours, peak = _timed(lambda path=path: check_file(path, path.name, Thresholds()))
        count, peer, peer_peak = _timed(lambda path=path: _pandas_rule(path))
        found = sum(1 for f in result.findings if f.rule == "small-cell") + result.omitted.get("small-cell", 0)
        assert found == count, (found, count)
        rows.append({"name": f"check {label} cells ({cells} cells)", "value": round(ours, 3), "unit": "s",
                     "peer": "pandas small-cell rule only", "peer_value": round(peer, 3),
                     "ratio": round(peer / ours, 2) if ours else None,
                     "note": f"peak {peak:.1f} MB vs {peer_peak:.1f} MB; {count} small cells, all rules run"})
    path, context, known, released = _all_rules(out_dir, 4_999 if not quick else 999, 200)  # + the total row
    def all_rules():
        return check_file(path, path.name, Thresholds(), context=context, known_ids=known, released=released)

    result, ours, peak = _timed(all_rules)
    for _ in range(2):  # best of 3: the machine is shared
        start = time.perf_counter()
        all_rules()
        ours = min(ours, time.perf_counter() - start)
    # the table is larger than the review page shows (500 rows, 60 columns: red team 15's ``preview``
    # rule): every other rule passes it
    assert {f.rule for f in result.findings if f.status.value != "pass"} == {"preview"}, result.to_dict()["findings"][:3]
    rows.append({"name": "check a 5,000-row declared table with every rule on (1M cells)", "value": round(ours, 3),
                 "unit": "s", "peer": "target", "peer_value": 1.0, "ratio": round(1.0 / ours, 2) if ours else None,
                 "note": f"peak {peak:.1f} MB; pre-gates, declaration, counts, dominance and p-ratio from "
                         "contributions, totals, 3 released tables, 200k PERSON_IDs; every rule passes but `preview` "
                         "(larger than the page shows); best of 3"})
    submitted = _submission(out_dir / "world", path, context)
    rows.append({"name": "submit the same table through the gate's service (1M cells)", "value": round(submitted, 3),
                 "unit": "s", "peer": "target", "peer_value": 1.0,
                 "ratio": round(1.0 / submitted, 2) if submitted else None,
                 "note": "stage, SHA-256, every check (no released table, no extract yet), request rows in the "
                         "database; every rule passes but `preview`; best of 3"})
    acro_time = _acro_check(10_000 if not quick else 2_500)
    ten_k = rows[0]["value"]
    rows.append({"name": "check a 10k-cell table", "value": ten_k, "unit": "s",
                 "peer": "ACRO crosstab check of the same table from microdata", "peer_value": round(acro_time, 3),
                 "ratio": round(acro_time / ten_k, 2) if ten_k else None,
                 "note": "ACRO works on microdata (200k rows); the gate works on the published table"})
    markdown = ("The gate's `check_file` runs all its rules on the file (file type, pre-gates: rows, "
                "identifiers in every column, dates, microdata; small cells, the table-of-magnitudes rules) "
                "where the pandas peer applies the small-cell rule alone: a ratio below 1 on the first two "
                "rows is the price of the other rules. Both find the same small cells (asserted). The 1M-cell "
                "tables have 5,000 rows (the default pre-gate limit per table file). The all-rules row is a "
                "declared table that every rule passes but `preview` (it is larger than the review page shows), "
                "checked with every rule on; its ratio is the 1 s target / our time.")
    return {"title": "Airlock disclosure checks", "rows": rows, "markdown": markdown}


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(Path(tmp), quick="--quick" in sys.argv), indent=1))
