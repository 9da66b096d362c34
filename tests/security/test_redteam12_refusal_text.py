"""Red team, twelfth round (12A): data out of a workspace in the text of a refusal.

Administrators do not see project data (docs/isolation.md, "Administrators do not see inside
workspaces"), yet they read the audit trail and the gate's log. Every refusal of the gate is audited
with its reason (``AirlockService._deny``), and a reason may quote what the workspace sent. Code in
a workspace submits a file whose *name* is the data (a refused name is quoted back), removes files
whose names are the data from a request (an unknown name is quoted back), or makes the gate's
rebuild refuse a table whose column name is the data: each time the gate refuses, and the refusal
writes the workspace's text into the trail, unreviewed. Each attempt runs against the real service,
registry and SQLite database in process, and asserts that no audit entry (nor the error the gate
answers with, which it also logs) carries more than a few dozen characters of the workspace's text.

Three got through before the fix: 85,000 characters of a "file name" (up to the upload limit,
100 MB, through the API) reached the audit trail in the refusal of a submission, of a resubmission
adding that file, and of a resubmission removing names the request does not hold. The rebuild's
refusal quoted a column name whole too (within the child's 1 MiB of results); it is cut now as well.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from disclosure_support import PROJECT, build_service, files

from pds_kernel.errors import InvalidInput

SAFE_TABLE = b"age,count\n18-40,120\n40-65,230\n65+,310\n"
#: what the workspace wants out: a marker repeated, far longer than any name the gate takes
MARK = "NIR1850375123456"
PAYLOAD = (MARK + ";") * 5000
#: the most of the workspace's text a refusal may quote
MOST = 300


def _longest_run_of_payload(text: str) -> int:
    """How many characters of PAYLOAD appear in ``text`` in one piece (by counts of the marker)."""
    return text.count(MARK) * (len(MARK) + 1)


def _audit_text(runtime) -> str:
    return "\n".join(json.dumps(e.details) for e in runtime.audit.entries())


@pytest.fixture
def gate(runtime):
    return build_service(runtime)[0]


def _changes_requested(service) -> str:
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    for checker in ("olga", "omar"):
        service.review(checker, view.id, {0: {"decision": "request_changes", "comment": "rows"}})
    return view.id


def test_a_file_name_that_is_the_data(gate, runtime):
    with pytest.raises(InvalidInput) as refused:
        gate.create("alice", PROJECT, [(PAYLOAD + ".csv", io.BytesIO(SAFE_TABLE))], "why")
    assert _longest_run_of_payload(str(refused.value)) <= MOST
    assert "invalid file name" in str(refused.value)
    denied = [e for e in runtime.audit.entries(action="airlock.request.create") if e.outcome != "ok"]
    assert denied, "the refusal is audited"
    assert _longest_run_of_payload(_audit_text(runtime)) <= MOST


def test_a_resubmitted_file_name_that_is_the_data(gate, runtime):
    request_id = _changes_requested(gate)
    with pytest.raises(InvalidInput) as refused:
        gate.resubmit("alice", request_id, [(PAYLOAD + ".csv", io.BytesIO(SAFE_TABLE))])
    assert _longest_run_of_payload(str(refused.value)) <= MOST
    assert _longest_run_of_payload(_audit_text(runtime)) <= MOST


def test_names_to_remove_that_are_the_data(gate, runtime):
    request_id = _changes_requested(gate)
    chunks = [f"{MARK}-{i:05d}" * 20 for i in range(500)]  # many names, each a part of the data
    with pytest.raises(InvalidInput) as refused:
        gate.resubmit("alice", request_id, remove=chunks)
    assert "not in the request" in str(refused.value)
    assert _longest_run_of_payload(str(refused.value)) <= MOST
    assert _longest_run_of_payload(_audit_text(runtime)) <= MOST


def test_a_column_name_that_is_the_data_in_a_rebuilt_table(gate, runtime, tmp_path):
    """A Parquet table the rebuild refuses (a column of lists) whose column name is the data: the
    refusal quotes the name (what the author needs to fix it), but never more than a few dozen
    characters of it."""
    path = tmp_path / "t.parquet"
    pd.DataFrame({PAYLOAD[:20000]: [[1, 2], [3]]}).to_parquet(path, index=False)
    with pytest.raises(InvalidInput) as refused:
        gate.create("alice", PROJECT, [("t.parquet", io.BytesIO(path.read_bytes()))], "why")
    assert "t.parquet" in str(refused.value)
    assert _longest_run_of_payload(str(refused.value)) <= MOST
    assert _longest_run_of_payload(_audit_text(runtime)) <= MOST
