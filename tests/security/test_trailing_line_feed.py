"""A name that is valid but for a final line feed is refused by every validator of the platform.

Python's ``$`` also matches before a final ``\\n``, so ``re.match(r"^[a-z]+$", "alice\\n")`` matches:
a delivery file named ``ER_PRS_F_202301.csv\\n`` loaded as January (and crashed the run beside the
real one), and a workbook part named ``xl/sharedStrings.xml\\n``, which no reader opens, passed the
export checks as the shared strings. Each validator now matches the whole text; each attempt below
takes a value the validator accepts, adds a line feed, and must be refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pds_kernel.airlock.cohort_intake import nir_is_valid
from pds_kernel.airlock.staging import check_file_name, check_request_id
from pds_kernel.errors import PdsError
from pds_kernel.lake import partition_dir
from pds_kernel.packages.names import check_name, check_version
from pds_kernel.registry.names import check_project_id, check_user_name
from pds_kernel.sandbox.bwrap import check_env_name
from pds_kernel.snds.file_names import parse_delivery_name
from pds_kernel.snds.tables import parse_file_name

VALIDATORS = {
    "registry user name": (check_user_name, "alice"),
    "registry project id": (check_project_id, "diabetes-t2"),
    "airlock request id": (check_request_id, "0123456789abcdef0123456789abcdef"),
    "airlock file name": (check_file_name, "ages.csv"),
    "package name": (check_name, "pds-hello"),
    "package version": (check_version, "1.0"),
    "sandbox environment name": (check_env_name, "PDS_PROJECT"),
    "delivery file name": (parse_delivery_name, "ER_PRS_F_202301.csv"),
    "delivery file name (yearly)": (parse_delivery_name, "T_MCO23B.csv"),
    "profile file name": (parse_file_name, "ER_PRS_F_202301.csv"),
    "lake month": (lambda month: partition_dir(Path("/lake"), "ER_PRS_F", month), "202301"),
}


@pytest.mark.parametrize("what", sorted(VALIDATORS))
def test_a_valid_value_with_a_final_line_feed_is_refused(what):
    validate, valid = VALIDATORS[what]
    validate(valid)  # the value itself passes
    with pytest.raises((PdsError, ValueError)):
        validate(valid + "\n")


def test_a_nir_with_a_final_line_feed_is_not_a_nir():
    number = "1850775123456"
    valid = number + f"{97 - int(number) % 97:02d}"  # the NIR's key
    assert nir_is_valid(valid)
    assert not nir_is_valid(valid + "\n")
