"""The request lists page by page (issue #15): the gate's real web service, its list page and API."""

from __future__ import annotations

import html
import re

import requests
from airlock_factories import OTHER, PROJECT, SAFE_TABLE, files, make_request
from airlock_web import PREFIX, browser


def section(page: str, title: str) -> str:
    """The HTML of one list of the page (from its heading to the next one)."""
    return page.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]


def request_links(part: str) -> list[str]:
    return re.findall(r'href="[^"]*/requests/([0-9a-f]{32})"', part)


def next_link(part: str) -> str | None:
    match = re.search(r'<a rel="next" href="([^"]+)"', part)
    return html.unescape(match.group(1)) if match else None


def test_queue_pages_walk_every_request_once_newest_first(base, service):
    made = [make_request(service, author="alice" if i % 3 else "bob").id for i in range(12)]
    olga = browser("olga")
    url = base + "requests?per_page=5"
    seen, pages = [], 0
    while url:
        page = olga.get(url if url.startswith("http") else base.split(PREFIX)[0] + url)
        assert page.status_code == 200
        queue = section(page.text, "To review")
        pages += 1
        assert f"page {pages} of 3 (12 requests)" in queue
        seen += request_links(queue)
        url = next_link(queue)
    assert pages == 3 and len(seen) == 12 and set(seen) == set(made)
    assert seen == list(reversed(made)), "newest first, in a stable order across pages"


def test_filters_and_the_api_page(base, service):
    for i in range(7):
        make_request(service, author="alice" if i % 2 else "bob")
    make_request(service, "withdrawn", author="alice")
    olga = browser("olga")
    by_bob = section(olga.get(base + "requests?author=bob&per_page=3").text, "To review")
    assert "page 1 of 2 (4 requests)" in by_bob and "alice" not in by_bob
    assert "Other requests I may see" not in olga.get(base + "requests").text, "shown on demand"
    withdrawn = olga.get(base + "requests?state=withdrawn&show=others").text
    assert "(1 request)" in section(withdrawn, "Other requests I may see")
    api = requests.get(base + "api/requests", params={"scope": "queue", "page": "2", "per_page": "5"},
                       headers={"Authorization": "token fake-olga"})
    body = api.json()
    assert api.status_code == 200 and (body["total"], body["page"], body["pages"]) == (7, 2, 2)
    assert len(body["requests"]) == 2
    for bad in ({"page": "0"}, {"per_page": "100000"}, {"page": "x"}, {"scope": "everything"}):
        refused = requests.get(base + "api/requests", params=bad, headers={"Authorization": "token fake-olga"})
        assert refused.status_code == 400, bad


def test_the_queue_leaves_out_what_the_checker_reviewed_and_what_they_may_not_see(base, service):
    mine = make_request(service, author="alice")
    other = make_request(service, author="alice")
    service.create("mallory", OTHER, files(("t.csv", SAFE_TABLE)), "other project")
    service.review("olga", mine.id, {0: {"decision": "approve"}})
    queue = service.list_page("olga", scope="queue")
    assert [r.id for r in queue.items] == [other.id] and queue.total == 1
    assert service.list_page("omar", scope="queue").total == 2, "omar has not reviewed yet"
    assert service.list_page("mallory", scope="all").total == 1, "mallory sees her own project only"
    assert service.list_page("oscar", scope="queue").total == 1, "oscar checks the other project"
    page = browser("mallory").get(base + "requests").text
    assert PROJECT not in page and "<h2>My requests</h2>" in page
    # a researcher checks no project: no "To review" list telling her that nothing waits for her
    assert "To review" not in page and "Nothing waits for your review" not in page
    checker = browser("oscar").get(base + "requests").text
    assert "<h2>To review</h2>" in checker and f"You are an output checker of {OTHER}" in checker
    # and a checker who researches nothing is not told to submit from a workspace they do not have
    assert "My requests" not in checker and "Submit one from your workspace" not in checker
