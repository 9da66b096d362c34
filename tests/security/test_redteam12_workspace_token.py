"""Red team, twelfth round (12A): a workspace's token reads requests that are not its user's.

A workspace reaches the gate with its own server token (``$JUPYTERHUB_API_TOKEN``), confined to its
project (:func:`pds_kernel.airlock.web.identity.workspace_project`): it submits its user's exports and
follows them. bob is a researcher *and* an output checker of diab-2024; code in his workspace uses
that token to read, before any approval, what alice submitted: the staged file itself, and the
request with its justification, context and findings (the checker's view, cell values included).
The bytes and text land in bob's workspace, where no review ever sees them again, and from which
bob's next export, or anyone sharing the workspace's code, carries them on; a checker reviews from
a browser at the gate, never from a workspace. Each attempt runs against the production gate on
loopback (tests/security/gate_support.py) with a test identity that resolves a workspace's token as
the production one does (``handler.workspace_project``), and asserts the read is refused and
audited, while bob's browser (the checker's page and API) and alice's workspace (her own request)
still work.

Both got through before the fix: the staged file (200, its bytes) and the request's checker view
(200, with its justification). Now a workspace's token acts on its own user's requests only, and
never reads a staged file.

Red team 13 (the same token, the list of requests): bob's workspace asked the list with
``scope=others``, ``all`` (with or without the project) or ``queue`` and got alice's request (its id,
author, state, number of files, check status): 5 attempts, 4 got through (the fifth, another
author's name under ``scope=mine``, listed nothing). A workspace's token now lists its user's own
requests only (``scope=mine``, no other author), refused and audited otherwise.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests
from gate_support import (  # noqa: F401  (gate_registry_fixture: a fixture)
    PREFIX,
    PROJECT,
    SECRET_LABEL,
    SECRET_TABLE,
    FakeIdentity,
    files,
    gate_registry_fixture,
    live_server,
)

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app, server_options

JUSTIFICATION = "ZZQJUSTIFICATION of alice"


class WorkspaceIdentity(FakeIdentity):
    """TEST ONLY. ``token ws-<user>-<project>``: a workspace's server token, as HubIdentity resolves
    one (the user, and ``handler.workspace_project``); ``token fake-<user>``: the user themselves."""

    async def user(self, handler, *, api):
        header = handler.request.headers.get("Authorization", "")
        if api and header.startswith("token ws-"):
            user, _, project = header[len("token ws-"):].partition("-")
            handler.workspace_project = project
            return user
        return await super().user(handler, api=api)


@pytest.fixture
def gate(runtime, gate_registry):
    service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=gate_registry)
    app = make_app(runtime, WorkspaceIdentity(), prefix=PREFIX, service=service)
    with live_server(app, **server_options()) as url:
        view = service.create("alice", PROJECT, files(("t.csv", SECRET_TABLE)), JUSTIFICATION)
        yield url + PREFIX, view.id, runtime


def _get(base: str, token: str, path: str) -> requests.Response:
    return requests.get(base + "api/" + path, headers={"Authorization": f"token {token}"}, timeout=30)


def _refusals(runtime) -> list:
    return [e for e in runtime.audit.entries(action="airlock.access.workspace") if e.outcome == "denied"]


def test_a_checkers_workspace_reads_another_authors_staged_file(gate):
    base, request_id, runtime = gate
    answer = _get(base, f"ws-bob-{PROJECT}", f"requests/{request_id}/files/0")
    assert answer.status_code == 403, answer.text[:200]
    assert SECRET_LABEL.encode() not in answer.content
    assert _refusals(runtime)
    assert _get(base, "fake-bob", f"requests/{request_id}/files/0").status_code == 200  # his browser may


def test_a_checkers_workspace_reads_another_authors_request(gate):
    base, request_id, runtime = gate
    answer = _get(base, f"ws-bob-{PROJECT}", f"requests/{request_id}")
    assert answer.status_code == 403, answer.text[:200]
    assert JUSTIFICATION not in answer.text and SECRET_LABEL not in answer.text
    assert _refusals(runtime)
    assert JUSTIFICATION in _get(base, "fake-bob", f"requests/{request_id}").text  # the checker's view, at the gate


def test_the_authors_workspace_still_follows_her_request(gate):
    base, request_id, _ = gate
    answer = _get(base, f"ws-alice-{PROJECT}", f"requests/{request_id}")
    assert answer.status_code == 200 and answer.json()["state"] == "submitted"
    assert _get(base, f"ws-alice-{PROJECT}", f"requests/{request_id}/files/0").status_code == 403  # never hers


@pytest.mark.parametrize("query", ["scope=others", "scope=all", "scope=queue", "author=alice",
                                   f"scope=all&project={PROJECT}"])
def test_a_checkers_workspace_lists_other_authors_requests(gate, query):
    base, request_id, runtime = gate
    answer = _get(base, f"ws-bob-{PROJECT}", f"requests?{query}")
    assert answer.status_code == 403, answer.text[:200]
    assert request_id not in answer.text and "alice" not in answer.text
    [refusal] = _refusals(runtime)
    assert refusal.actor == "bob" and refusal.details["asked_project"] == PROJECT
    listed = _get(base, "fake-bob", f"requests?{query}").json()["requests"]  # his browser may
    assert query == "author=alice" or [r["id"] for r in listed] == [request_id]


def test_the_authors_workspace_still_lists_her_requests(gate):
    base, request_id, _ = gate
    for query in ("", "?scope=mine", f"?author=alice&project={PROJECT}"):
        listed = _get(base, f"ws-alice-{PROJECT}", f"requests{query}").json()["requests"]
        assert [r["id"] for r in listed] == [request_id], query
