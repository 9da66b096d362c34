"""Failed login attempts in the hub database (:class:`pds_kernel.hub.accounts.FailedLogins`): a
block lasts ``wait`` seconds after the last failure, counted in whole seconds, and ends with a
successful login. The hub-level attack (a restart does not lift a block) is in
tests/security/test_journeys.py."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from pds_kernel.hub.accounts import FailedLogins


def _store(tmp_path) -> FailedLogins:
    engine = create_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    return FailedLogins(sessionmaker(bind=engine)())


def test_five_failures_block_until_the_wait_has_passed(tmp_path):
    store = _store(tmp_path)
    for i in range(4):
        store.add("bob", now=1000.0 + i)
    assert not store.is_blocked("bob", allowed=5, wait_seconds=600, now=1004.0)
    store.add("bob", now=1005.0)
    assert store.get("bob") == (5, 1005.0)
    assert store.is_blocked("bob", allowed=5, wait_seconds=600, now=1005.0 + 600)
    assert not store.is_blocked("bob", allowed=5, wait_seconds=600, now=1005.0 + 601)
    assert not store.is_blocked("alice", allowed=5, wait_seconds=600, now=1005.0)  # per user


def test_a_block_is_counted_in_whole_seconds_not_in_the_seconds_of_a_day(tmp_path):
    """Upstream compared ``timedelta.seconds`` (which drops whole days) with the wait: a day and
    five minutes after the last failure read as five minutes, and the account was blocked again."""
    store = _store(tmp_path)
    for _ in range(5):
        store.add("bob", now=0.0)
    assert not store.is_blocked("bob", allowed=5, wait_seconds=600, now=86_400 + 300)


def test_a_success_clears_the_count_and_the_count_survives_a_new_session(tmp_path):
    store = _store(tmp_path)
    for _ in range(5):
        store.add("bob", now=10.0)
    again = _store(tmp_path)  # another process (the restarted hub) on the same database
    assert again.is_blocked("bob", allowed=5, wait_seconds=600, now=20.0)
    again.clear("bob")
    assert store.get("bob") == (0, 0.0)
    assert not store.is_blocked("bob", allowed=5, wait_seconds=600, now=20.0)
    assert not again.is_blocked("bob", allowed=0, wait_seconds=600, now=20.0)  # no limit set
