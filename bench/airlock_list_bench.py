"""The checker's queue with many requests: one page of each list, and the list page over HTTP.

A platform database (SQLite, the local default) holds N export requests (5,000 and 50,000; 500 and
5,000 in quick mode) of 20 projects, 200 authors, every state, one or two files each, and a review
by the checker on a tenth of the open ones. The rows are written in bulk with SQLAlchemy (the
service would run the disclosure checks on every file: hours for 50,000; the list never reads the
files). Measured:

* ``AirlockService.list_page`` for the checker: the review queue (page 1 and a middle page) and a
  filtered list (state + project + author);
* the list page of the gate's real web service (``GET /requests``: to review and mine, one page
  each; with ``show=others`` the other requests too), over HTTP from a live Tornado server: the
  time for the queue to open;
* peer: the list as it was before issue #15 (one query for every request, then each request's files
  and reviews loaded one by one and the permissions asked per request), kept here to compare; the
  page called it three times.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import insert, select

PROJECTS = [f"proj-{i:02d}" for i in range(20)]
AUTHORS = [f"res{i:03d}" for i in range(200)]
CHECKER = "olga"
STATES = ["submitted", "under_review", "approved", "released", "rejected", "changes_requested",
          "withdrawn", "draft"]
PREFIX = "/services/airlock/"


class _HeaderIdentity:
    """BENCH ONLY: the user named by a cookie (the real identity asks the hub)."""

    async def user(self, handler, *, api):
        return handler.get_cookie("bench_user") or None

    def login_url(self, handler):
        return None

    def handlers(self, prefix):
        return []


def _world(root: Path, n: int):
    from pds_kernel.airlock.models import ExportRequest, RequestFile, Review
    from pds_kernel.airlock.service import AirlockService
    from pds_kernel.registry import Registry, Role
    from pds_kernel.runtime import Runtime
    from pds_kernel.settings import Paths, Settings

    paths = Paths(**{name: root / name for name in Paths.__dataclass_fields__})
    for name in Paths.__dataclass_fields__:
        getattr(paths, name).mkdir(parents=True, exist_ok=True)
    runtime = Runtime(Settings(paths=paths))
    registry = Registry.from_runtime(runtime)
    far = date(2099, 12, 31)
    registry.upsert_user("bench", CHECKER)
    for pid in PROJECTS:
        registry.upsert_project("bench", pid, title=pid, start_date=date(2020, 1, 1), end_date=far)
    for pid in PROJECTS[:10]:  # the checker checks half of the projects
        registry.add_member("bench", pid, CHECKER, Role.OUTPUT_CHECKER, far)
    for i, author in enumerate(AUTHORS):
        registry.upsert_user("bench", author)
        registry.add_member("bench", PROJECTS[i % len(PROJECTS)], author, Role.RESEARCHER, far)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    reqs, files, reviews = [], [], []
    for i in range(n):
        rid = hashlib.sha256(str(i).encode()).hexdigest()[:32]
        author = AUTHORS[i % len(AUTHORS)]
        state = STATES[i % len(STATES)]
        created = start + timedelta(minutes=i)
        reqs.append({"id": rid, "project_id": PROJECTS[AUTHORS.index(author) % len(PROJECTS)], "author": author,
                     "state": state, "justification": "bench", "context": "{}", "reviews_required": 2,
                     "min_cell": 10, "round": 1, "created_at": created, "updated_at": created})
        for index in range(1 + i % 2):
            sha = hashlib.sha256(f"{i}/{index}".encode()).hexdigest()
            files.append({"request_id": rid, "index": index, "name": f"t{index}.csv", "stored_name": f"{index}.csv",
                          "sha256": sha, "size": 100, "kind": "table",
                          "check_status": ["pass", "review", "fail"][i % 3], "check_result": "{}"})
            if state in {"submitted", "under_review"} and i % 10 == 0:
                reviews.append({"request_id": rid, "reviewer": CHECKER, "file_index": index, "file_sha256": sha,
                                "decision": "approve", "comment": "", "round": 1, "created_at": created})
    with runtime.sessions() as s:
        s.execute(insert(ExportRequest), reqs)
        s.execute(insert(RequestFile), files)
        if reviews:
            s.execute(insert(Review), reviews)
        s.commit()
    return runtime, AirlockService(runtime, registry=registry)


def _before_15(service, actor: str, scope: str) -> list:
    """The list as it was before issue #15: every request, files and reviews loaded per request."""
    from pds_kernel.airlock import permissions
    from pds_kernel.airlock.checks import Status, worst
    from pds_kernel.airlock.models import ExportRequest
    from pds_kernel.airlock.reviews import complete_reviewers
    from pds_kernel.airlock.states import REVIEWABLE_STATES
    from pds_kernel.db import transaction

    rows = []
    with transaction(service._sessions) as s:
        for req in s.scalars(select(ExportRequest).order_by(ExportRequest.created_at.desc())):
            rows.append((req.id, req.project_id, req.author, req.state,
                         worst(Status(f.check_status) for f in req.files).value, actor in complete_reviewers(req)))
    out = []
    for rid, project, author, state, _status, reviewed in rows:
        if not permissions.can_view(service.registry, actor, project, author):
            continue
        if scope == "queue" and (state not in {s.value for s in REVIEWABLE_STATES} or author == actor
                                 or reviewed or not permissions.can_check(service.registry, actor, project)):
            continue
        out.append(rid)
    return out


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def _serve(runtime, service):
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    from pds_kernel.airlock.web import make_app

    sock, port = bind_unused_port()
    ready, state = threading.Event(), {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = HTTPServer(make_app(runtime, _HeaderIdentity(), prefix=PREFIX, service=service))
        server.add_sockets([sock])
        state["loop"] = loop
        ready.set()
        loop.run_forever()
        server.stop()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    return f"http://127.0.0.1:{port}{PREFIX}", lambda: (state["loop"].call_soon_threadsafe(state["loop"].stop),
                                                       thread.join(10))


def _measure(root: Path, n: int, with_peer: bool) -> dict:
    runtime, service = _world(root, n)
    try:
        out = {}
        out["queue"], page = _best(lambda: service.list_page(CHECKER, scope="queue"))
        out["queue_total"] = page.total
        middle = max(1, page.pages // 2)
        out["queue_middle"], _ = _best(lambda: service.list_page(CHECKER, scope="queue", page=middle))
        out["filtered"], filtered = _best(lambda: service.list_page(
            CHECKER, scope="all", state="released", project=PROJECTS[3], author=AUTHORS[3]))
        out["filtered_total"] = filtered.total
        base, stop = _serve(runtime, service)
        try:
            session = requests.Session()
            session.cookies.set("bench_user", CHECKER)

            def open_page(query: str = "") -> tuple[float, str]:
                times, text = [], ""
                for _ in range(5):
                    started = time.perf_counter()
                    response = session.get(base + "requests" + query, timeout=120)
                    response.raise_for_status()
                    times.append(time.perf_counter() - started)
                    text = response.text
                return statistics.median(times), text
            out["page"], html = open_page()
            out["page_others"], _ = open_page("?show=others")
            assert f"of {-(-page.total // 25)} ({page.total} requests)" in html, "the page shows the queue's size"
        finally:
            stop()
        if with_peer:
            out["peer_queue"], old = _best(lambda: _before_15(service, CHECKER, "queue"), repeat=1)
            assert len(old) == page.total, f"same queue: {len(old)} before #15, {page.total} now"
            out["peer_page"] = out["peer_queue"] + 2 * _best(lambda: _before_15(service, CHECKER, "all"), repeat=1)[0]
        return out
    finally:
        runtime.close()


def run(out_dir: Path, quick: bool) -> dict:
    sizes = (500, 5_000) if quick else (5_000, 50_000)
    rows, notes = [], []
    for n in sizes:  # the peer reads every request one by one: run at the smaller size only
        r = _measure(out_dir / f"n{n}", n, with_peer=n == sizes[0])

        def row(name, value, peer=None, peer_value=None, note="", n=n):
            rows.append({"name": f"{name} ({n:,} requests)", "value": round(value, 4), "unit": "s",
                         "peer": peer, "peer_value": round(peer_value, 3) if peer_value is not None else None,
                         "ratio": round(peer_value / value, 1) if peer_value else None, "note": note})
        peer = "peer" in r or "peer_queue" in r
        row("list page over HTTP: to review + mine (median of 5)", r["page"],
            "before #15: 3 full lists" if peer else None, r.get("peer_page"),
            f"queue {r['queue_total']:,} requests, 25 a page")
        row("list page with the other requests too (show=others)", r["page_others"],
            note="the checker's whole projects, shown on demand")
        row("review queue, page 1 (best of 3)", r["queue"], "before #15: the whole queue" if peer else None,
            r.get("peer_queue"), "same requests in the queue on both sides (asserted)" if peer else "")
        row("review queue, middle page", r["queue_middle"])
        row("state + project + author filter", r["filtered"], note=f"{r['filtered_total']} requests")
        notes.append(n)
    markdown = ("SQLite (the local default), one checker of 10 of the 20 projects, requests of every state with "
                "one or two files. Ours: `AirlockService.list_page` (`pds_kernel.airlock.listing`: "
                "visibility and filters in SQL, indexes of revision 0005, one page of rows and their files); "
                "the list page is the gate's real web service over HTTP. Peer: the pre-#15 list (every "
                "request with its files and reviews loaded one by one, permissions per request), which the "
                "page called three times (run at the smaller size only: it reads every request one by one). "
                "Goal: the queue opens in under 0.5 s with 50,000 requests.")
    return {"title": "Airlock: the checker's queue with many requests", "rows": rows, "markdown": markdown}


if __name__ == "__main__":
    import sys
    import tempfile

    result = run(Path(tempfile.mkdtemp(prefix="pds-bench-")), quick="--quick" in sys.argv)
    for r in result["rows"]:
        print(r)
