"""Who may do what to a request. The rules live in :mod:`pds_kernel.permissions`, the platform's one
permissions module (paired ``can_*`` / ``check_*``); this module re-exports the airlock's part of
it so that ``from . import permissions`` in the airlock keeps working.
"""

from __future__ import annotations

from ..permissions import (  # noqa: F401  (re-exported)
    can_act,
    can_check,
    can_import,
    can_read_contents,
    can_research,
    can_review_submitted,
    can_see_digests,
    can_see_votes,
    can_view,
    check_act,
    check_checker,
    check_import,
    check_not_submitter,
    check_read_contents,
    check_submitter,
    check_view,
    checkers_of,
    is_admin,
    projects_checked_by,
    projects_researched_by,
)
