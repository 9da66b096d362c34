"""The gate's API reference page is generated from its OpenAPI document: it must stay in step."""

from pathlib import Path

from pds_kernel.airlock.web.openapi import WHO, build_openapi, render_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "gate-api.md"


def test_gate_api_page_matches_the_openapi_document():
    assert PAGE.read_text(encoding="utf-8") == render_reference(), (
        "docs/reference/gate-api.md is stale: run "
        "`python -m pds_kernel.airlock.web.openapi > docs/reference/gate-api.md`"
    )


def test_every_operation_says_who_may_call_it():
    operations = {op["operationId"] for methods in build_openapi()["paths"].values() for op in methods.values()}
    assert operations == set(WHO)
