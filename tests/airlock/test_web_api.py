"""Fuzz the JSON API from its own OpenAPI document, against the real running gate (production
server options): never a 5xx, every answer conforming to the document (status, media type,
schema), invalid inputs refused with a 4xx, never an answer without identity."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from airlock_factories import make_request
from airlock_web import FakeIdentity, live_server
from hypothesis import HealthCheck, Phase, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pds_kernel.airlock.web import make_app, server_options

PREFIX = "/services/airlock/"
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: the author, a checker, an admin who checks nothing, a member of another project
USERS = ("alice", "olga", "root", "mallory")


@pytest.fixture
def server(runtime, service):
    make_request(service)  # something to find
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service), **server_options()) as url:
        yield url


def operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(url + PREFIX + "api/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_and_never_fails(server, mode):
    """Every operation of the document, with generated inputs (valid ones, then invalid ones): 401
    anonymous; signed in as each kind of user, no 5xx and an answer the document describes; an
    invalid input is refused with a 4xx.

    (``schemathesis.pytest.from_fixture`` does not run under pytest 9 yet, so the operations are
    driven through Hypothesis directly; few examples each keeps the run well under a minute.)
    """
    base = server + PREFIX.rstrip("/")
    ops = operations(server)
    assert len(ops) == 15  # 12 + createImport (imports) + the package requests' 2 (packages)
    for operation in ops:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=5, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case):
            # a query parameter whose value is an empty list is not sent at all: such a "negative"
            # case goes on the wire as a valid request (schemathesis generated one: ``{'': []}``)
            assume(all(value != [] for value in (case.query or {}).values()))
            anonymous = case.call(base_url=base, headers={"Authorization": ""})
            assert anonymous.status_code in {400, 401, 404, 413, 415}, \
                f"{case.method} {case.formatted_path} answered anonymously: {anonymous.status_code}"
            for user in USERS:
                response = case.call(base_url=base, headers={"Authorization": f"token fake-{user}"})
                case.validate_response(response, checks=CONFORMANCE)
                if mode == GenerationMode.NEGATIVE:
                    assert 400 <= response.status_code < 500, \
                        f"{case.method} {case.formatted_path} accepted invalid input: {response.status_code}"

        check()


@pytest.mark.parametrize("query", [
    "page=", "per_page=",                  # empty: not an integer (the fuzzer's negative case)
    "page=%D9%A3", "per_page=%EF%BC%91",   # Arabic-Indic 3 and fullwidth 1: int() reads them
    "page=%201", "page=1%20", "page=+1", "page=0", "per_page=0", "page=1234567890",
])
def test_the_api_refuses_what_is_not_an_integer_on_the_wire(server, query):
    response = requests.get(f"{server}{PREFIX}api/requests?{query}", headers={"Authorization": "token fake-alice"})
    assert response.status_code == 400, (query, response.status_code)


def test_the_list_page_takes_an_empty_page_number_as_the_first_page(server):
    alice = {"fake_user": "alice"}  # pages sign in with a cookie (see airlock_web.FakeIdentity)
    page = requests.get(f"{server}{PREFIX}requests?per_page=&mine_page=", cookies=alice)
    assert page.status_code == 200 and "Requests" in page.text
    refused = requests.get(f"{server}{PREFIX}requests?per_page=%EF%BC%91", cookies=alice)
    assert refused.status_code == 400


def test_openapi_document_is_valid(server):
    from jsonschema import Draft4Validator  # noqa: F401  (jsonschema is what schemathesis validates with)

    doc = requests.get(server + PREFIX + "api/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc["servers"][0]["url"] == PREFIX.rstrip("/")
    assert all(path.startswith("/api/") for path in doc["paths"])


def test_fuzzed_calls_on_a_real_request_never_bypass_the_rules(runtime, service):
    """Every operation, generated inputs, aimed at a real submitted request: a non-member never
    gets a 2xx (nor learns anything), its author never gets its contents, every answer conforms,
    and a single checker's calls can never release it (two independent reviews are required)."""
    real = make_request(service)
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service),
                     **server_options()) as server:
        schema = schemathesis.openapi.from_url(server + PREFIX + "api/openapi.json")
        base = server + PREFIX.rstrip("/")
        operations = [result.ok() for result in schema.get_all_operations()]
        aimed = [op for op in operations if "request_id" in op.path]
        assert len(aimed) >= 8
        for operation in aimed:
            @given(case=operation.as_strategy())
            @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case):
                case.path_parameters["request_id"] = real.id
                if "index" in case.path_parameters:
                    case.path_parameters["index"] = 0
                outsider = case.call(base_url=base, headers={"Authorization": "token fake-mallory"})
                assert outsider.status_code in {400, 403, 404, 422}, \
                    f"{case.method} {case.formatted_path} as a non-member: {outsider.status_code}"
                assert "ages.csv" not in outsider.text
                author = case.call(base_url=base, headers={"Authorization": "token fake-alice"})
                case.validate_response(author, checks=CONFORMANCE)
                assert b"18-40" not in author.content, "the author got the unreleased table back"
                checker = case.call(base_url=base, headers={"Authorization": "token fake-olga"})
                case.validate_response(checker, checks=CONFORMANCE)

            check()

    after = service.get_request("alice", real.id)
    assert after.state in {"submitted", "under_review", "withdrawn"} and after.released_at is None
    assert not (runtime.settings.paths.outbox / real.project / real.id).exists()
    released = [e for e in runtime.audit.entries(action="airlock.request.release") if e.outcome == "ok"]
    assert released == []
    denied = [e for e in runtime.audit.entries() if e.actor == "mallory" and e.outcome == "denied"]
    assert denied, "the non-member's attempts are in the audit trail"
