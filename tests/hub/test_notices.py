"""What the home page tells a researcher about a workspace the hub stopped, as the hub writes the
stop and as a new hub process reads it back from the audit trail (``pds_kernel.hub.notices``).
The real audit trail on SQLite; the page itself: tests/hub/test_hub.py (local) and
tests/k8s/test_notebook_restarts.py (Kubernetes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pds_kernel.audit import AuditEvent
from pds_kernel.hub.common import HubContext
from pds_kernel.hub.notices import NOTICE_DAYS, STOP_NOTICES, WorkspaceNotices


def _stop(user: str, server: str, cause: str | None, actor: str = "hub", reason: str = "why") -> AuditEvent:
    details = {"server": server, "reason": reason, **({"cause": cause} if cause else {})}
    return AuditEvent(actor=actor, action="workspace.stop", target=f"user:{user}", project=server, details=details)


def _start(user: str, server: str) -> AuditEvent:
    return AuditEvent(actor=user, action="workspace.start", target=f"user:{user}", project=server,
                      details={"server": server})


@pytest.fixture
def context(settings):
    context = HubContext.from_settings(settings)
    yield context
    context.runtime.close()


@pytest.mark.parametrize("cause", sorted(STOP_NOTICES))
def test_each_stop_by_the_hub_is_told_with_its_fixed_sentence(context, cause):
    context.record(_stop("alice", "alpha-study", cause, reason="<script>x</script> from the database"))
    (text,) = context.notices.for_user("alice").values()
    assert text == f"Your workspace alpha-study was stopped: {STOP_NOTICES[cause]}."
    assert "script" not in text  # the entry's free text is never shown
    assert context.notices.for_user("bob") == {}


def test_a_start_or_her_own_stop_clears_it_and_an_unknown_cause_tells_nothing(context):
    notices = context.notices
    context.record(_stop("alice", "alpha-study", "access revoked"))
    context.record(_start("alice", "alpha-study"))
    assert notices.for_user("alice") == {}
    context.record(_stop("alice", "alpha-study", "home over quota"))
    context.record(_stop("alice", "alpha-study", "stopped", actor="alice"))  # her spawner's own stop
    assert notices.for_user("alice") == {}
    context.record(_stop("alice", "alpha-study", "a cause nobody wrote"))
    assert notices.for_user("alice") == {}


def test_a_new_hub_process_tells_what_the_last_one_did(context, settings):
    context.record(_stop("alice", "alpha-study", "access revoked"))
    context.record(_stop("alice", "beta-study", "home over quota"))
    context.record(_stop("bob", "alpha-study", "extract changed"))
    context.record(_start("bob", "alpha-study"))  # bob started again: nothing to tell him
    again = HubContext.from_settings(settings)  # what a hub restart builds
    try:
        assert again.notices.for_user("alice") == context.notices.for_user("alice")
        assert set(again.notices.for_user("alice")) == {"alpha-study", "beta-study"}
        assert again.notices.for_user("bob") == {}
    finally:
        again.runtime.close()


def test_old_stops_and_malformed_entries_are_not_told(context):
    audit = context.runtime.audit
    audit.record(_stop("alice", "alpha-study", "access revoked"))
    audit.record(_stop("carol", "../../etc", "access revoked"))  # a server name no project has
    audit.record(AuditEvent(actor="hub", action="workspace.stop", target="project:alpha-study", project="alpha-study",
                            details={"cause": "access revoked"}))  # not a user's
    later = WorkspaceNotices()
    later.seed(audit, now=datetime.now(UTC) + timedelta(days=NOTICE_DAYS, minutes=1))
    assert later.for_user("alice") == {}
    now = WorkspaceNotices()
    now.seed(audit)
    assert set(now.for_user("alice")) == {"alpha-study"}
    assert now.for_user("carol") == {} and now.for_user("project:alpha-study") == {}


def test_what_another_process_writes_is_told_at_the_watchers_next_pass(context, settings):
    """`pds hub sync` runs in a process of its own: its stop reaches the running hub's pages at the
    membership watcher's next pass (before: at the next hub start only), and a later start clears it."""
    import asyncio
    from types import SimpleNamespace

    from pds_kernel.hub.expiry import MembershipWatcher
    from pds_kernel.runtime import Runtime

    other = Runtime(settings)  # the command line's own process
    try:
        other.audit.record(_stop("alice", "alpha-study", "access revoked", actor="root"))
        assert context.notices.for_user("alice") == {}
        hub = SimpleNamespace(hub=object(), users={})  # a hub with no server running now
        watcher = MembershipWatcher(hub, context, token="unused", interval=10)
        asyncio.run(watcher.check_once())
        (text,) = context.notices.for_user("alice").values()
        assert text.startswith("Your workspace alpha-study was stopped: the registry no longer lets you")
        other.audit.record(_start("alice", "alpha-study"))
        context.notices.catch_up(context.runtime.audit)
        assert context.notices.for_user("alice") == {}
    finally:
        other.close()
