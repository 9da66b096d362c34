"""Red team: the gate's own reading of the project's extract.

The gate knows a project's persons from its published extract: the table pre-gate refuses a column
holding the project's PERSON_IDs, or the start of one, by the prefixes of ``COHORT.parquet``. Each
test is one real attempt through the real airlock service; each asserts that it failed."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from model_export_support import OTHER, PROJECT, make_service, people, publish_cohort

from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.extract.mount_check import ExtractRefused

pytestmark = [pytest.mark.functional]


@pytest.fixture
def gate(runtime):
    """(service, settings, the project's rows), its cohort published as a build publishes it."""
    rows = people(PROJECT, 600, seed=5)
    publish_cohort(runtime.settings, PROJECT, rows)
    return make_service(runtime), runtime.settings, rows


def _table_of_prefixes(rows: pd.DataFrame) -> bytes:
    """Six areas, each labelled with the first 20 characters of one of the project's PERSON_IDs."""
    return pd.DataFrame({"area": ["north", "south", "east", "west", "centre", "coast"],
                         "count": [20, 25, 30, 35, 40, 45],
                         "code": [p[:20] for p in rows.PERSON_ID[:6]]}).to_csv(index=False).encode()


def _submit(service, data: bytes):
    return service.create("alice", PROJECT, [("areas.csv", io.BytesIO(data))], "counts by area", {})


def test_the_published_cohort_refuses_the_projects_person_ids(gate):
    """The control: with the published cohort, the prefixes are the project's, and refused."""
    service, _, rows = gate
    with pytest.raises(RefusedFiles, match="this project's PERSON_ID"):
        _submit(service, _table_of_prefixes(rows))


def test_a_cohort_rewritten_after_publication_hides_the_projects_person_ids(gate):
    """Got through before the fix. Someone who can write the project's folder replaces the published
    COHORT.parquet with another project's persons: the gate took its PERSON_ID prefixes from it, so
    a table carrying the start of this project's PERSON_IDs passed the pre-gate (to review, as an
    undeclared table). Now the gate reads only the extract the audit trail says was published,
    checked as a workspace's is: the submission is refused, and says who puts it right."""
    service, settings, rows = gate
    cohort = settings.paths.projects / PROJECT / "extract" / "COHORT.parquet"
    cohort.chmod(0o644)
    people(OTHER, 600, seed=6)[["PERSON_ID"]].to_parquet(cohort)
    with pytest.raises(ExtractRefused, match="published extract.*re-publish it"):
        _submit(service, _table_of_prefixes(rows))
    assert not [p for p in settings.paths.staging.rglob("*") if p.is_file()]


def _other_persons_in(cohort, how: str) -> None:
    """Put another project's persons in ``cohort`` (0444 in a published build: whoever can write
    the project's folder makes it writable first): ``rewrite`` writes into the same file,
    ``swap`` renames a new file over it."""
    cohort.chmod(0o644)
    forged = people(OTHER, 600, seed=6)[["PERSON_ID"]]
    if how == "rewrite":
        with open(cohort, "r+b") as handle:
            forged.to_parquet(handle)
            handle.truncate()
    else:
        forged.to_parquet(cohort.with_name("forged.parquet"))
        cohort.with_name("forged.parquet").replace(cohort)


@pytest.mark.parametrize("how", ["rewrite", "swap"])
def test_a_cohort_changed_between_the_gates_check_and_its_read_is_refused(gate, monkeypatch, how):
    """Got through before the fix. The gate checked the extract (re-hashed against the manifest the
    audit trail recorded), then read COHORT.parquet by its path: a cohort rewritten, or swapped by
    a rename, in between hid the project's persons from the table pre-gate, and a table carrying the
    start of their PERSON_IDs passed it. The window is hit here exactly: the gate's own check
    (``mount_check.open_and_check``) runs, then the cohort changes, as a writer racing it would.
    Now the gate reads the files through the checked build's descriptors and takes the tree's
    fingerprint after reading: the submission is refused, saying who puts it right, and audited."""
    from pds_kernel.extract import mount_check

    service, settings, rows = gate
    cohort = settings.paths.projects / PROJECT / "extract" / "COHORT.parquet"
    real, raced = mount_check.open_and_check, []

    def check_then_race(*args, **kwargs):
        found = real(*args, **kwargs)
        if not raced:
            raced.append(how)
            _other_persons_in(cohort, how)
        return found

    monkeypatch.setattr(mount_check, "open_and_check", check_then_race)
    with pytest.raises(ExtractRefused, match="changed between the gate's check and its reading.*re-publish it"):
        _submit(service, _table_of_prefixes(rows))
    assert raced == [how]
    assert not [p for p in settings.paths.staging.rglob("*") if p.is_file()]
    refused = service.runtime.audit.entries(project=PROJECT, action="airlock.request.create")[-1]
    assert refused.outcome == "failed" and "changed between the gate's check" in refused.details["reason"]



def _pseudonyms(n: int, seed: int) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"PERSON_ID": [rng.bytes(32).hex() for _ in range(n)]})


def _model_carrying(ids: pd.Series) -> bytes:
    """A safetensors model whose one tensor holds the first 8 bytes of each pseudonym, in binary."""
    import numpy as np
    from safetensors.numpy import save

    raw = b"".join(bytes.fromhex(p[:16]) for p in ids)
    return save({"embedding.weight": np.frombuffer(raw, dtype="<u8").copy()})


def _submit_model(service, data: bytes):
    return service.create("alice", PROJECT, [("net.safetensors", io.BytesIO(data))], "a model", {})


def test_the_numbers_a_model_is_compared_with_are_read_as_checked(runtime, monkeypatch):
    """Got through before the fix. The gate compares a model's numbers with the extract's
    (``model-tensors``), read when the model is checked, by path, well after the extract's check. A
    cohort swapped in that window for another project's persons let a model carrying this
    project's pseudonyms in binary pass the rule. The window is hit here exactly: right after the
    gate's own scan of the model (``models.scan_model``), just before it reads the extract's
    numbers. Now those are read through the checked build and compared with the check after
    reading: the submission is refused."""
    from pds_kernel.airlock.checks import models

    cohort = _pseudonyms(400, seed=7)
    publish_cohort(runtime.settings, PROJECT, cohort)
    service = make_service(runtime)
    model = _model_carrying(cohort.PERSON_ID[:300])
    path = runtime.settings.paths.projects / PROJECT / "extract" / "COHORT.parquet"
    real, raced = models.scan_model, []

    def scan_then_race(*args, **kwargs):
        found = real(*args, **kwargs)
        if not raced:
            raced.append(1)
            _pseudonyms(400, seed=8).to_parquet(path.with_name("forged.parquet"))
            path.with_name("forged.parquet").replace(path)
        return found

    monkeypatch.setattr(models, "scan_model", scan_then_race)
    with pytest.raises(ExtractRefused, match="changed between the gate's check and its reading.*re-publish it"):
        _submit_model(service, model)
    assert raced == [1]

    publish_cohort(runtime.settings, PROJECT, cohort)  # the control, re-published: the rule finds them
    view = _submit_model(service, model)
    assert view.files[0].check_status == "fail"
    findings = service.get_request("olga", view.id).files[0].check["findings"]
    assert any(f["rule"] == "model-tensors" and "pseudonyms" in f["message"] for f in findings), findings
