"""The gate's rules on each database it runs on: SQLite here by default, PostgreSQL in production.

The tests below are the ones whose outcome depends on the database (transactions, row locks, the
conditional UPDATE that claims a release, the ordering of reviews). They are imported from their
modules and run again here with ``runtime`` on SQLite and on a real PostgreSQL server
(``db_runtime`` in tests/conftest.py), so the same assertions hold on both.
"""

from __future__ import annotations

import pytest
from test_release import (  # noqa: F401  (collected again here, on both databases)
    test_concurrent_final_approvals_release_once,
    test_concurrent_releases_release_once,
    test_hash_mismatch_blocks_release,
    test_release_copies_reviewed_bytes_and_author_downloads,
)
from test_review import (  # noqa: F401
    test_author_never_reviews_even_as_checker,
    test_change_after_review_loses_that_review,
    test_n_reviews_rule_default_two,
    test_votes_hidden_until_own_review,
)
from test_states import test_review_driven_moves, test_submit_twice_refused_and_audited  # noqa: F401


@pytest.fixture
def runtime(db_runtime):
    """Every fixture of tests/airlock (registry, service) on this module's database."""
    return db_runtime
