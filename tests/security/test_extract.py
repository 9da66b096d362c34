"""Attacks on the extract spec's new cohort criteria (acts and hospital drugs): codes crafted to
slip past the boundary check into the cohort query. Each test is one attempt, asserted refused."""

from __future__ import annotations

import pytest

from pds_kernel.errors import InvalidInput
from pds_kernel.extract.spec import parse_spec


def _spec(criterion: str) -> str:
    return f"project: red-team\nyears: [2022, 2022]\ninclude: [{criterion}]\ntables:\n  IR_BEN_R: [BEN_SEX_COD]\n"


@pytest.mark.parametrize("criterion", [
    '{procedures: {ccam: ["DEQP003\\n"]}}',                  # trailing newline: `$` would accept it
    '{procedures: {ccam: ["DEQP003\' OR \'1\'=\'1"]}}',       # SQL-style injection in a code
    '{procedures: {ccam: ["ＤＥＱＰ００３"]}}',                # full-width letters and digits
    '{hospital_drugs: {ucd: ["９３０１４０１"]}}',              # full-width digits (\\d would accept them)
    '{hospital_drugs: {ucd: ["9301401 "]}}',                  # a padded code
    '{hospital_drugs: {ucd: [9301401]}}',                     # a YAML integer (leading zeros silently lost)
    '{hospital_drugs: {ucd: [{"$ne": ""}]}}',                 # a mapping in place of a code
])
def test_a_crafted_code_is_refused_at_the_boundary(criterion):
    with pytest.raises(InvalidInput, match="is not a (CCAM act|UCD) code"):
        parse_spec(_spec(criterion))


def test_a_well_formed_code_outside_the_nomenclature_is_refused():
    """A syntactically valid act that no CCAM version knows (a made-up code meant to probe the
    lake's content) is refused before any query runs."""
    with pytest.raises(InvalidInput, match="in no nomenclature of the SNDS catalogue"):
        parse_spec(_spec("{procedures: {ccam: [AAAA999]}}"))
