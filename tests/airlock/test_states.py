"""The transition table: complete, pure, and enforced by the service (refusals audited)."""

from __future__ import annotations

import pytest
from airlock_factories import make_request

from pds_kernel.airlock import states
from pds_kernel.airlock.states import FINAL_STATES, TRANSITIONS, Action, State, check_transition
from pds_kernel.errors import InvalidTransition


def test_every_state_is_reachable_and_every_rule_has_an_event():
    reachable = {State.DRAFT} | {rule.to for rule in TRANSITIONS.values()}
    assert reachable == set(State)
    assert all(rule.event.startswith("airlock.request.") for rule in TRANSITIONS.values())
    assert FINAL_STATES == {State.REJECTED, State.WITHDRAWN, State.REVOKED}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(Action))
def test_table_answers_every_pair(state, action):
    if (state, action) in TRANSITIONS:
        assert check_transition(state, action).to == TRANSITIONS[(state, action)].to
        assert states.can_transition(state, action)
    else:
        assert not states.can_transition(state, action)
        with pytest.raises(InvalidTransition):
            check_transition(state, action)


def test_diagram_lists_every_transition():
    text = states.render_diagram()
    for (src, action), rule in TRANSITIONS.items():
        assert f"{src.value} --> {rule.to.value}: {action.value}" in text


# Each legal move, reached through the real service.
LEGAL = [
    ("draft", "submit", "submitted"),
    ("draft", "withdraw", "withdrawn"),
    ("submitted", "withdraw", "withdrawn"),
    ("under_review", "withdraw", "withdrawn"),
    ("changes_requested", "withdraw", "withdrawn"),
    ("approved", "revoke", "revoked"),
    ("released", "revoke", "revoked"),
]


@pytest.mark.parametrize("start,action,end", LEGAL)
def test_legal_moves_through_the_service(service, start, action, end):
    view = make_request(service, start)
    assert view.state == start
    if action == "submit":
        view = service.submit("alice", view.id)
    elif action == "withdraw":
        view = service.withdraw("alice", view.id, "changed my mind")
    elif action == "revoke":
        view = service.revoke("olga" if start == "approved" else "root", view.id, "mistake")
    assert view.state == end


def test_review_driven_moves(service):
    assert make_request(service, "under_review").state == "under_review"
    assert make_request(service, "approved").state == "approved"
    assert make_request(service, "changes_requested").state == "changes_requested"
    assert make_request(service, "rejected").state == "rejected"
    assert make_request(service, "released").state == "released"


@pytest.mark.parametrize("start", ["draft", "submitted", "under_review", "changes_requested",
                                   "rejected", "withdrawn", "revoked"])
def test_release_refused_unless_approved(service, runtime, start):
    view = make_request(service, start)
    with pytest.raises(InvalidTransition):
        service.release("root", view.id)
    denied = [e for e in runtime.audit.entries(action="airlock.request.release") if e.outcome == "denied"]
    assert denied and denied[-1].target == f"request:{view.id}"


@pytest.mark.parametrize("start", ["draft", "approved", "rejected", "withdrawn", "released", "revoked",
                                   "changes_requested"])
def test_review_refused_outside_review_states(service, start):
    view = make_request(service, start)
    with pytest.raises(InvalidTransition):
        service.review("bob", view.id, {0: {"decision": "approve"}})


@pytest.mark.parametrize("start", ["rejected", "withdrawn", "revoked", "released", "approved"])
def test_withdraw_refused_after_decision(service, start):
    view = make_request(service, start)
    with pytest.raises(InvalidTransition):
        service.withdraw("alice", view.id)


def test_submit_twice_refused_and_audited(service, runtime):
    view = make_request(service, "submitted")
    with pytest.raises(InvalidTransition):
        service.submit("alice", view.id)
    last = runtime.audit.entries(action="airlock.request.submit")[-1]
    assert last.outcome == "denied" and "cannot submit" in last.details["reason"]
    assert runtime.audit.verify().ok
