"""Red team: the notices a new hub process builds from the audit trail's notebook ends (Kubernetes).

A hub that starts again tells each researcher why their workspace was restarted or stopped from the
``workspace.restart`` and ``workspace.stop`` entries of the last days
(``pds_kernel.hub.notices.WorkspaceNotices.seed``, ``pds_kernel.k8s.restarts.notice_of_entry``).
Those entries are input: whoever can write the platform's database (or a bug) could have written
them. What an adversary tries: the recorded cause, reason or pod message carrying markup, control
characters or a lie ("your account is compromised, sign in at ..."); fields of the wrong type or
out of range (a memory limit that is text, a watch timeout of 10**12 or a boolean, a crash loop of
-1 restarts, a finish time that is not an instant); an entry about another user's server, a server
name that is a path, an entry made by the user herself. None got through: the sentence is built
again from the validated fields only (the recorded cause is never shown), else nothing is told.

The audit trail is the real one (SQLite); the hub context is what a hub process builds.
"""

from __future__ import annotations

import pytest

from pds_kernel.audit import AuditEvent
from pds_kernel.hub.common import HubContext
from pds_kernel.k8s.restarts import ADVICE

LIE = "<b>your account is compromised</b>: sign in again at http://192.0.2.1/\x1b[31m\u202e"
GENUINE = {"server": "alpha-study", "pod": "jupyter-alice--alpha-study", "pod_uid": "5b4d3c2a-1d2a-4e5f-9a8b-7c6d5e4f3a2b",
           "restarts": 1, "reason": "OOMKilled", "exit_code": 137, "finished_at": "2026-03-01T10:05:00Z",
           "cause": "out of memory (limit 4 GiB)", "cause_kind": "memory", "memory_limit": "4 GiB",
           "watch_timeout": 30, "pod_message": "", "unseen_restarts": 0}


def _restart(details: dict, *, user: str = "alice", server: str = "alpha-study", actor: str = "hub") -> AuditEvent:
    return AuditEvent(actor=actor, action="workspace.restart", target=f"user:{user}", project=server,
                      details=details)


def _notices_of_a_new_hub(settings, *events: AuditEvent) -> dict:
    first = HubContext.from_settings(settings)
    try:
        for event in events:
            first.runtime.audit.record(event)
    finally:
        first.runtime.close()
    again = HubContext.from_settings(settings)
    try:
        return {user: again.notices.for_user(user) for user in ("alice", "bob")}
    finally:
        again.runtime.close()


def _fixed_form(text: str) -> bool:
    """A sentence the hub writes: no character outside plain printable ASCII, one of its advices."""
    return text.isascii() and text.isprintable() and "<" not in text and any(a in text for a in ADVICE.values())


def test_a_genuine_entry_is_told_again(settings):
    told = _notices_of_a_new_hub(settings, _restart(GENUINE))
    assert told["alice"] == {"alpha-study": "Your workspace alpha-study was restarted at 2026-03-01 10:05:00 UTC: "
                                            "out of memory (limit 4 GiB). Its kernels ended; "
                                            f"{ADVICE['memory']}."}
    assert told["bob"] == {}


@pytest.mark.parametrize("forged", [
    {"cause": LIE},
    {"reason": LIE, "cause": LIE},
    {"pod_message": LIE, "cause": LIE},
    {"memory_limit": LIE},
    {"memory_limit": "4 GiB<script>"},
    {"finished_at": "2026-03-01T10:05:00Z<b>now</b>"},
    {"exit_code": "137; " + LIE},
    {"exit_code": 2**70, "reason": "Error"},
    {"cause_kind": LIE},
])
def test_forged_fields_never_reach_the_page(settings, forged):
    told = _notices_of_a_new_hub(settings, _restart({**GENUINE, **forged}))["alice"]
    assert all(_fixed_form(text) and "compromised" not in text and "script" not in text for text in told.values()), told


@pytest.mark.parametrize("forged", [{"watch_timeout": 10**12}, {"watch_timeout": True}, {"watch_timeout": "30"},
                                    {"pod_uid": None}, {"cause_kind": "memory<"}])
def test_an_entry_that_does_not_validate_tells_nothing(settings, forged):
    assert _notices_of_a_new_hub(settings, _restart({**GENUINE, **forged}))["alice"] == {}


@pytest.mark.parametrize("limit,window", [(-1, 600), (True, 600), (3, 10**9), (3, "600"), (10**6, 600)])
def test_a_crash_loop_with_forged_counts_falls_back_to_the_fixed_sentence(settings, limit, window):
    stop = AuditEvent(actor="hub", action="workspace.stop", target="user:alice", project="alpha-study",
                      details={**GENUINE, "cause": "restarted repeatedly", "reason": LIE, "latest_reason": "OOMKilled",
                               "latest_cause": LIE, "restart_limit": limit, "restart_window": window})
    (text,) = _notices_of_a_new_hub(settings, stop)["alice"].values()
    assert text.startswith("Your workspace alpha-study was stopped: its notebook kept ending"), text


def test_entries_about_others_paths_or_by_herself_tell_nothing(settings):
    told = _notices_of_a_new_hub(
        settings,
        _restart(GENUINE, server="../../hub/home"),
        _restart(GENUINE, server="alpha-study<script>"),
        _restart(GENUINE, actor="alice"),  # an entry as if she had written it
        AuditEvent(actor="hub", action="workspace.restart", target="project:alpha-study", project="alpha-study",
                   details=GENUINE))
    assert told == {"alice": {}, "bob": {}}
