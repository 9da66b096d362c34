"""The review rules: which verdicts count, what a verdict must hold, how complete reviews decide.

Pure functions over request rows, used by :mod:`.service` (to decide) and :mod:`.views` (to
report). A checker gives one verdict per file, bound to the file's SHA-256. A reviewer is
*complete* for the current round when they hold a valid verdict on every current file (same bytes,
given since the file was last sent; approvals of files not sent again survive a resubmission, other
verdicts are answered by it). When
``reviews_required`` checkers are complete, the request is decided: any reject rejects, else any
request for changes asks for changes, else it is approved. Who may review is
:func:`.permissions.check_checker`'s question (output checkers of the project, never the author).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import IntegrityError, InvalidInput
from ..settings import MIN_REVIEWS
from .checks import Status
from .inputs import check_text
from .models import ExportRequest, RequestFile, Review
from .staging import staged_round
from .states import Action

DECISIONS = ("approve", "request_changes", "reject")
MAX_COMMENT = 10_000


def quorum(required: int | None) -> int:
    """The complete reviews a request needs: what its row (or the project) says, never fewer than
    :data:`~pds_kernel.settings.MIN_REVIEWS`, whatever was configured or written in the database
    (one checker's approval released a file of a project set to one review before:
    tests/security/test_redteam12_quorum.py)."""
    return max(required if isinstance(required, int) and not isinstance(required, bool) else 0, MIN_REVIEWS)


def valid_verdicts(req: ExportRequest, checkers: frozenset[str] | None = None) -> dict[str, dict[int, Review]]:
    """reviewer -> file index -> their latest verdict that still counts; with ``checkers`` (the
    project's output checkers now: :func:`pds_kernel.permissions.checkers_of`), only theirs."""
    current = {f.index: f.sha256 for f in req.files}
    # the round each file was last sent in: a verdict counts for that upload, not for the same bytes
    # sent again (the count of complete reviews then told the author whether her upload from outside
    # equalled what she sent from the workspace: red team 20B)
    sent_in = {f.index: staged_round(f.stored_name) or req.round for f in req.files}
    latest: dict[tuple[str, int], Review] = {}
    for review in req.reviews:  # ordered by id: later rows win
        latest[(review.reviewer, review.file_index)] = review
    out: dict[str, dict[int, Review]] = {}
    for (reviewer, index), review in latest.items():
        if checkers is not None and reviewer not in checkers:
            continue  # no longer a checker of the project: their verdicts no longer count
        if current.get(index) != review.file_sha256 or review.round < sent_in[index]:
            continue  # the file changed or was sent again (or left the request): the verdict is lost
        if review.decision != "approve" and review.round != req.round:
            continue  # a request for changes or a rejection is answered by the resubmission
        out.setdefault(reviewer, {})[index] = review
    return out


def complete_reviewers(req: ExportRequest, checkers: frozenset[str] | None = None) -> dict[str, dict[int, Review]]:
    """Reviewers holding a valid verdict on every current file (they count toward the quorum);
    ``checkers`` as for :func:`valid_verdicts`."""
    indexes = {f.index for f in req.files}
    return {r: v for r, v in valid_verdicts(req, checkers).items() if set(v) >= indexes}


def uncounted_reviewers(req: ExportRequest, counted: Mapping[str, object]) -> dict[str, list[str]]:
    """``{"not_counted": [...]}``: the reviewers with a complete review of the current files who are
    not in ``counted`` (no longer output checkers of the project), for the audit and the refusal; else {}."""
    gone = sorted(set(complete_reviewers(req)) - set(counted))
    return {"not_counted": gone} if gone else {}


def check_approvals(req: ExportRequest, complete: Mapping[str, Mapping[int, Review]]) -> None:
    """Raise :class:`IntegrityError` unless the ``complete`` reviews (those that count) of the
    current files are all approvals, at least the request's quorum of them: checked at release."""
    approvals = [r for r, per in complete.items() if all(v.decision == "approve" for v in per.values())]
    if len(approvals) < quorum(req.reviews_required) or len(approvals) != len(complete):
        gone = uncounted_reviewers(req, complete).get("not_counted")
        raise IntegrityError("the current files do not carry the required approvals: nothing released"
                             + (f" ({', '.join(gone)} no longer output checkers of the project: their "
                                "verdicts no longer count; another checker must review)" if gone else ""))


def clean_verdicts(request_id: str, files: Mapping[int, RequestFile], verdicts: Mapping,
                   already: Mapping[int, Review]) -> dict[int, tuple[str, str]]:
    """file index -> (decision, comment) from a reviewer's ``{index: {decision, comment, sha256?}}``.

    Every current file must get a verdict unless the reviewer already holds a valid one
    (``already``); a request for changes or a rejection needs a comment, and so does approving a
    file whose automatic checks failed; ``sha256``, when given, must be the bytes the reviewer saw.
    """
    clean: dict[int, tuple[str, str]] = {}
    for raw_index, verdict in verdicts.items():
        try:
            index = int(raw_index)
        except (TypeError, ValueError):
            raise InvalidInput(f"file number {str(raw_index)[:20]!r} is not a number") from None
        if index not in files:
            raise InvalidInput(f"request {request_id} has no file number {index}")
        if not isinstance(verdict, Mapping):
            raise InvalidInput("each verdict is {decision, comment}")
        decision = str(verdict.get("decision", ""))
        comment = check_text(verdict.get("comment", "") or "", "a comment", MAX_COMMENT).strip()
        if decision not in DECISIONS:
            raise InvalidInput(f"decision {decision[:40]!r} is not one of {', '.join(DECISIONS)}")
        if decision != "approve" and not comment:
            raise InvalidInput(f"say why for file {files[index].name}: a comment is required "
                               "to request changes or reject")
        if decision == "approve" and not comment and files[index].check_status == Status.FAIL.value:
            raise InvalidInput(f"{files[index].name} failed the automatic checks: approving it "
                               "needs a comment explaining the exception (why the finding is a "
                               "false positive or acceptable)")
        seen = verdict.get("sha256")
        if seen and seen != files[index].sha256:
            raise IntegrityError(f"{files[index].name} changed since you opened it: reload and review again")
        clean[index] = (decision, comment)
    missing = sorted(set(files) - set(already) - set(clean))
    if missing:
        raise InvalidInput("give a verdict on every file; missing: " + ", ".join(files[i].name for i in missing))
    return clean


def decision_of(complete: Mapping[str, Mapping[int, Review]], reviews_required: int) -> Action | None:
    """The move the complete reviews make, or None while fewer than ``reviews_required``."""
    if len(complete) < quorum(reviews_required):
        return None
    decisions = {v.decision for per in complete.values() for v in per.values()}
    return (Action.REJECT if "reject" in decisions else
            Action.REQUEST_CHANGES if "request_changes" in decisions else Action.APPROVE)
