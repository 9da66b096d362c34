"""The served-bytes ledger (a token bucket per workspace in the platform database)."""

from __future__ import annotations

import pytest

from pds_kernel.served_bytes import ServedBytesLedger


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_grants_refills_and_never_exceeds_twice_its_capacity_a_day(runtime):
    clock = Clock()
    ledger = ServedBytesLedger(runtime.sessions, capacity=1_000, period_seconds=100, clock=clock)
    assert ledger.reserve("alice", "p", 600, 600).granted == 600
    assert ledger.reserve("alice", "p", 600, 500).granted == 0  # 400 left, 500 needed
    assert ledger.reserve("alice", "p", 600, 100).granted == 400  # up to what is left
    assert ledger.reserve("bob", "p", 1_000, 1_000).granted == 1_000  # another workspace
    assert ledger.reserve("alice", "q", 1_000, 1_000).granted == 1_000
    clock.now += 50  # half the period: half the capacity back
    assert ledger.reserve("alice", "p", 1_000, 1).granted == 500
    clock.now += 10_000  # long idle: capped at the capacity
    assert ledger.reserve("alice", "p", 5_000, 1).granted == 1_000
    total, clock.now = 0, clock.now + 1
    for _ in range(100):  # one period, asking all the time
        total += ledger.reserve("alice", "p", 1_000, 1).granted
        clock.now += 1
    assert total <= 2 * 1_000
    assert ledger.reserve("alice", "p", 1, 1).served >= 2_900


@pytest.mark.parametrize("want,need", [(0, 0), (-5, -5), (5, 10), (10**12, 1)])
def test_invalid_reservations_are_refused(runtime, want, need):
    ledger = ServedBytesLedger(runtime.sessions, capacity=1_000)
    with pytest.raises(ValueError):
        ledger.reserve("alice", "p", want, need)
