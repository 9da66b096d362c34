"""What a request's page tells its viewer to do next, from the request's state and the viewer's
part in it (issue #15: the page showed a state word and an empty "Reviews" heading; a researcher
whose request waited, or was sent back, had to guess what happens next and what to do).

Only wording: who may do what is decided by the service (the ``actions`` of the view); this module
reads them and never grants anything.
"""

from __future__ import annotations

from ..views import RequestView


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def next_step(view: RequestView, viewer: str) -> str:
    """One or two sentences: where the request stands and what ``viewer`` can do about it."""
    author = viewer == view.author
    exporting = view.direction == "export"
    remaining = max(view.reviews_required - view.complete_reviews, 0)
    state = view.state
    if state == "draft":
        if "submit" in view.actions:
            return "This request is a draft: nobody reviews it until you submit it (button below)."
        return "This request is a draft: nobody reviews it until its author submits it."
    if state in ("submitted", "under_review"):
        waiting = (f"Waiting for {_plural(remaining, 'more approval')} from the output checkers of "
                   f"{view.project} ({view.complete_reviews} of {view.reviews_required} reviews so far).")
        if "review" in view.actions:
            return (f"Your review is needed. {waiting} Give a decision for each file (a comment is "
                    "required to request changes or reject), then press Submit my review.")
        if view.reviewed_by_me:
            return f"You have reviewed this request. {waiting}"
        if author:
            after = ("Once it is released, download the files from this page; until then you may "
                     "withdraw it." if exporting else "Once it is released, the files appear under "
                     f"/imports/{view.id}/ in every workspace of {view.project}.")
            return f"{waiting} {after}"
        return waiting
    if state == "changes_requested":
        if author and exporting:
            return ("The output checkers asked for changes: read their comments under Reviews, change "
                    "the files in your workspace, then send them again from a notebook with "
                    f'ws.resubmit_export("{view.id}", [files]) (the same request, next round).')
        return "The output checkers asked its author for changes; the request waits for a resubmission."
    if state == "approved":
        return "Approved by the output checkers: it is being released. Reload this page in a moment."
    if state == "released":
        if "download" in view.actions:
            return "Released: download the files below (each download is recorded in the audit trail)."
        if not exporting:
            return f"Released: the files are under /imports/{view.id}/ in every workspace of {view.project}."
        return "Released: its author can download the files from this page."
    if state == "rejected":
        return ("Rejected: these files cannot leave. The reviewers' comments below say why; a changed "
                "analysis needs a new request.")
    if state in ("withdrawn", "revoked"):
        return f"{state.capitalize()}: this request is closed and nothing in it can be downloaded."
    return ""
