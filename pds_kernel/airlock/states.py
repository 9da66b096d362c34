"""The states of a request (an export or an import: one model, ``direction``) and the one table of every legal move between them.

Pure: no I/O, no database. :mod:`.service` is the only caller that changes a request's state, and it
always goes through :func:`check_transition` first. The number of reviews a request needs is
configuration (per project), not a state: ``under_review`` covers "some but not enough reviews".

``render_diagram()`` writes the reference page (``pds airlock diagram``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import InvalidTransition


class State(str, enum.Enum):
    DRAFT = "draft"  #: files staged, not yet submitted (no check run, nobody reviews)
    SUBMITTED = "submitted"  #: checks done, waiting for the first review
    UNDER_REVIEW = "under_review"  #: at least one review, fewer than the project requires
    CHANGES_REQUESTED = "changes_requested"  #: reviewers asked the author to change files
    APPROVED = "approved"  #: enough independent approvals; release may copy the reviewed bytes
    REJECTED = "rejected"  #: refused; final
    RELEASED = "released"  #: copied to the outbox; the author may download
    WITHDRAWN = "withdrawn"  #: the author gave up; final
    REVOKED = "revoked"  #: an approval or release taken back by a checker or admin; final


class Action(str, enum.Enum):
    SUBMIT = "submit"
    START_REVIEW = "start_review"
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"
    RESUBMIT = "resubmit"
    RELEASE = "release"
    WITHDRAW = "withdraw"
    REVOKE = "revoke"


class Actor(str, enum.Enum):
    """Who may trigger a move (checked by :mod:`.permissions`, not here)."""

    AUTHOR = "author"  #: the researcher who made the request (or an admin on their behalf)
    CHECKER = "checker"  #: an output checker of the project who is not the author (never an admin as such)
    ADMIN = "admin"  #: a platform admin only


@dataclass(frozen=True)
class Rule:
    to: State
    actor: Actor
    event: str  #: audit action written when the move happens


TRANSITIONS: dict[tuple[State, Action], Rule] = {
    (State.DRAFT, Action.SUBMIT): Rule(State.SUBMITTED, Actor.AUTHOR, "airlock.request.submit"),
    (State.DRAFT, Action.WITHDRAW): Rule(State.WITHDRAWN, Actor.AUTHOR, "airlock.request.withdraw"),
    (State.SUBMITTED, Action.START_REVIEW): Rule(State.UNDER_REVIEW, Actor.CHECKER, "airlock.request.start_review"),
    (State.SUBMITTED, Action.WITHDRAW): Rule(State.WITHDRAWN, Actor.AUTHOR, "airlock.request.withdraw"),
    (State.UNDER_REVIEW, Action.APPROVE): Rule(State.APPROVED, Actor.CHECKER, "airlock.request.approve"),
    (State.UNDER_REVIEW, Action.REQUEST_CHANGES): Rule(State.CHANGES_REQUESTED, Actor.CHECKER,
                                                       "airlock.request.request_changes"),
    (State.UNDER_REVIEW, Action.REJECT): Rule(State.REJECTED, Actor.CHECKER, "airlock.request.reject"),
    (State.UNDER_REVIEW, Action.WITHDRAW): Rule(State.WITHDRAWN, Actor.AUTHOR, "airlock.request.withdraw"),
    (State.CHANGES_REQUESTED, Action.RESUBMIT): Rule(State.SUBMITTED, Actor.AUTHOR, "airlock.request.resubmit"),
    (State.CHANGES_REQUESTED, Action.WITHDRAW): Rule(State.WITHDRAWN, Actor.AUTHOR, "airlock.request.withdraw"),
    (State.APPROVED, Action.RELEASE): Rule(State.RELEASED, Actor.CHECKER, "airlock.request.release"),
    (State.APPROVED, Action.REVOKE): Rule(State.REVOKED, Actor.CHECKER, "airlock.request.revoke"),
    (State.RELEASED, Action.REVOKE): Rule(State.REVOKED, Actor.ADMIN, "airlock.request.revoke"),
}

#: States from which no move exists.
FINAL_STATES = frozenset(s for s in State if not any(src == s for src, _ in TRANSITIONS))

#: States in which the reviews are settled, so everyone allowed to see the request sees every vote.
DECIDED_STATES = frozenset({State.CHANGES_REQUESTED, State.APPROVED, State.REJECTED,
                            State.RELEASED, State.REVOKED})

#: States in which checkers may add a review.
REVIEWABLE_STATES = frozenset({State.SUBMITTED, State.UNDER_REVIEW})


def can_transition(state: State | str, action: Action | str) -> bool:
    """True when ``action`` is legal from ``state`` (whoever asks)."""
    try:
        return (State(state), Action(action)) in TRANSITIONS
    except ValueError:
        return False


def check_transition(state: State | str, action: Action | str) -> Rule:
    """The rule for ``action`` from ``state``; :class:`InvalidTransition` when there is none."""
    try:
        key = (State(state), Action(action))
    except ValueError:
        raise InvalidTransition(f"unknown state or action: {state!r}, {action!r}") from None
    rule = TRANSITIONS.get(key)
    if rule is None:
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s == key[0])
        raise InvalidTransition(
            f"cannot {key[1].value} a request that is {key[0].value}"
            + (f" (possible: {', '.join(allowed)})" if allowed else " (this state is final)")
        )
    return rule


def actions_from(state: State | str) -> list[Action]:
    """Legal actions from ``state``, in table order (used to show buttons)."""
    return [a for (s, a) in TRANSITIONS if s == State(state)]


def render_diagram() -> str:
    """The reference page: a Mermaid state diagram and the table, generated from :data:`TRANSITIONS`."""
    lines = [
        "# Request states (exports and imports)",
        "",
        "Generated by `pds airlock diagram` from `pds_kernel/airlock/states.py`; do not edit.",
        "",
        "One table for both directions: an import (`direction = import`, pds_kernel/airlock/imports.py)",
        "goes through the same states; its release copies the reviewed bytes to the project's",
        "`/imports/<request>/` instead of the outbox.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        "    [*] --> draft",
    ]
    for (src, action), rule in TRANSITIONS.items():
        lines.append(f"    {src.value} --> {rule.to.value}: {action.value}")
    for state in sorted(FINAL_STATES, key=lambda s: s.value):
        lines.append(f"    {state.value} --> [*]")
    lines += ["```", "", "| from | action | to | who | audit event |", "| --- | --- | --- | --- | --- |"]
    for (src, action), rule in TRANSITIONS.items():
        lines.append(f"| {src.value} | {action.value} | {rule.to.value} | {rule.actor.value} | `{rule.event}` |")
    lines.append("")
    return "\n".join(lines)
