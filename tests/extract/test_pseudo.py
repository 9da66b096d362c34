"""Key store and pseudonyms: keys kept apart, private, destroyable; one HMAC per distinct identifier."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import polars as pl
import pytest

from pds_kernel.errors import InvalidInput, NotFound, PermissionDenied
from pds_kernel.pseudo import KEY_BYTES, KeyStore, pseudonym, pseudonym_table, pseudonyms
from pds_kernel.registry import Registry


def test_key_is_private_and_stable(runtime):
    store = KeyStore.from_runtime(runtime)
    key = store.ensure("proj-a", "admin")
    path = runtime.settings.paths.keys / "proj-a.key"
    assert len(key) == KEY_BYTES
    assert path.stat().st_mode & 0o777 == 0o600
    assert runtime.settings.paths.keys.stat().st_mode & 0o777 == 0o700
    assert store.ensure("proj-a", "admin") == key  # not recreated
    with pytest.raises(InvalidInput):
        store.create("proj-a", "admin")
    assert store.get("proj-a") != store.ensure("proj-b", "admin")
    actions = [e.action for e in runtime.audit.entries(action="pseudo.key.create")]
    assert actions == ["pseudo.key.create", "pseudo.key.create"]
    assert all(key.hex() not in str(e) for e in runtime.audit.entries())


def test_a_key_readable_by_others_is_refused(runtime):
    store = KeyStore.from_runtime(runtime)
    store.ensure("proj-a", "admin")
    (runtime.settings.paths.keys / "proj-a.key").chmod(0o644)
    with pytest.raises(PermissionDenied, match="0600"):
        store.get("proj-a")


def test_destroy_makes_the_link_unrecoverable(runtime):
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)  # an os:<user> is no administrator
    registry.upsert_project("root", "proj-a", title="A", start_date=date(2024, 1, 1), end_date=date(2099, 1, 1))
    store = KeyStore.from_runtime(runtime)
    key = store.ensure("proj-a", "admin")
    registry.close_project("root", "proj-a", reason="protocol ended")
    store.destroy("proj-a", "root", confirm=True, reason="project closed")
    assert not (runtime.settings.paths.keys / "proj-a.key").exists()
    with pytest.raises(PermissionDenied, match="destroyed"):
        store.get("proj-a")
    with pytest.raises(PermissionDenied, match="destroyed"):
        store.ensure("proj-a", "admin")
    with pytest.raises(NotFound):
        store.destroy("proj-a", "root", confirm=True)
    [entry] = runtime.audit.entries(action="pseudo.key.destroy")
    assert entry.project == "proj-a" and entry.details["reason"] == "project closed"
    assert key.hex() not in (runtime.settings.paths.keys / "proj-a.destroyed").read_text()


def test_bad_project_id_never_reaches_a_path(runtime):
    with pytest.raises(InvalidInput):
        KeyStore.from_runtime(runtime).ensure("../etc", "admin")


def test_pseudonym_is_hmac_sha256_hex():
    key = b"k" * 32
    assert pseudonym(key, "ABC") == hmac.new(key, b"ABC", hashlib.sha256).hexdigest()
    assert pseudonym(key, "ABC") != pseudonym(b"j" * 32, "ABC")


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_batch_pseudonyms_are_the_standard_hmac_for_every_key_length(key_length):
    """:func:`pseudonyms` reuses the keyed pad states; it must give the library HMAC's value
    for keys shorter than, equal to and longer than SHA-256's 64-byte block (hashed first)."""
    key = bytes(range(256))[:key_length]
    values = ["", "A", "1" * 17, "É" * 40, "x" * 1000]
    assert pseudonyms(key, values) == [hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
                                       for v in values]


def test_pseudonym_table_hashes_distinct_values_once():
    key = b"k" * 32
    ids = pl.Series(["B", "A", "B", None, "A", "C"])
    table = pseudonym_table(key, ids, source="SRC", target="PID")
    assert table["SRC"].to_list() == ["A", "B", "C"]
    assert table["PID"].to_list() == [pseudonym(key, v) for v in "ABC"]
    assert table.schema == {"SRC": pl.String, "PID": pl.String}
