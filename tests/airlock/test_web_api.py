"""Fuzz the JSON API from its own OpenAPI document: never a 500, never an answer without identity."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from airlock_factories import make_request
from airlock_web import FakeIdentity, live_server
from hypothesis import HealthCheck, given, settings

from pds_kernel.airlock.web import make_app

PREFIX = "/services/airlock/"


@pytest.fixture
def server(runtime, service):
    make_request(service)  # something to find
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)) as url:
        yield url


def test_no_server_error_and_no_bypass(server):
    """Every operation of the document, with generated inputs: 401 anonymous, never 5xx signed in.

    (``schemathesis.pytest.from_fixture`` does not run under pytest 9 yet, so the operations are
    driven through Hypothesis directly.)
    """
    schema = schemathesis.openapi.from_url(server + PREFIX + "api/openapi.json")
    base = server + PREFIX.rstrip("/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            anonymous = case.call(base_url=base, headers={"Authorization": ""})
            # 401, or 400 when Tornado refuses a malformed body before anyone is identified
            assert anonymous.status_code in {400, 401}, f"{case.method} {case.formatted_path} answered anonymously"
            for user in ("olga", "mallory"):
                response = case.call(base_url=base, headers={"Authorization": f"token fake-{user}"})
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"

        check()


def test_openapi_document_is_valid(server):
    from jsonschema import Draft4Validator  # noqa: F401  (jsonschema is what schemathesis validates with)

    doc = requests.get(server + PREFIX + "api/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc["servers"][0]["url"] == PREFIX.rstrip("/")
    assert all(path.startswith("/api/") for path in doc["paths"])


def test_fuzzed_calls_on_a_real_request_never_bypass_the_rules(runtime, service):
    """Every operation, generated inputs, aimed at a real submitted request: a non-member never
    gets a 2xx (nor learns anything), and a single checker's calls can never release it (two
    independent reviews are required)."""
    real = make_request(service)
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)) as server:
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
                checker = case.call(base_url=base, headers={"Authorization": "token fake-olga"})
                assert checker.status_code < 500, f"{case.method} {case.formatted_path}: {checker.text}"

            check()

    after = service.get_request("alice", real.id)
    assert after.state in {"submitted", "under_review"} and after.released_at is None
    assert not (runtime.settings.paths.outbox / real.project / real.id).exists()
    released = [e for e in runtime.audit.entries(action="airlock.request.release") if e.outcome == "ok"]
    assert released == []
    denied = [e for e in runtime.audit.entries() if e.actor == "mallory" and e.outcome == "denied"]
    assert denied, "the non-member's attempts are in the audit trail"
