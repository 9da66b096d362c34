"""Fuzz the JSON API from its own OpenAPI document: never a 500, never an answer without identity."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from airlock_factories import make_request
from airlock_web import FakeIdentity, live_server
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
