"""The catalogue of audit actions: every action the platform writes to its audit trail, what its
target names and what an entry of it records.

The trail stores an action as text; this table is the one list of the texts it may hold. The store
refuses an event whose action is not here (:func:`check_action`, called by
:func:`pds_kernel.audit.append_many` before anything is written), so a new or misspelt action
fails its first test instead of writing entries that an auditor's query by action would miss.
Entries written before an action was renamed stay readable: only writing is checked.

Every action may be written with the outcome ``ok``, ``denied`` (a refusal: the details give the
reason) or ``failed``; an *access decision* is written for each check of a user's rights on a
project (``ok`` when allowed, ``denied`` otherwise). ``docs/reference/audit-actions.md`` is
generated from this table: ``python -m pds_kernel.audit_actions > docs/reference/audit-actions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby


@dataclass(frozen=True)
class ActionInfo:
    """One audit action: what its entries' ``target`` names and what an entry records."""

    target: str
    records: str


_REQUEST = "request:<id>"
_USER = "user:<name>"
_PROJECT = "project:<id>"

#: Every audit action, grouped by the part of the platform that writes it.
ACTIONS: dict[str, ActionInfo] = {
    # The airlock: export and import requests, their files, reviews and the gate's access checks.
    "airlock.access.download": ActionInfo(_USER, "access decision: may this researcher download a released file of the project"),
    "airlock.access.import": ActionInfo(_USER, "access decision: may this researcher ask to import files into the project"),
    "airlock.access.review": ActionInfo(_USER, "access decision: may this output checker review the project's requests"),
    "airlock.access.submit": ActionInfo(_USER, "access decision: may this researcher submit an export request"),
    "airlock.access.workspace": ActionInfo("path:<gate path>", "code in a workspace asked the gate about another project's requests (refused)"),
    "airlock.access.cross_origin": ActionInfo("path:<gate path>", "the gate refused a form its signed-in user's browser sent from a page of another origin (Sec-Fetch-Site, Origin in details): script of a workspace or a link in a file acting in a checker's name (refused)"),
    "airlock.body.too_slow": ActionInfo("path:<gate path>", "the gate cut a request's body that arrived slower than gate.body_min_bytes_per_second after gate.body_grace_seconds (client, bytes received and declared, seconds in details); nothing of it was kept (refused)"),
    "airlock.file.download": ActionInfo(_REQUEST, "a released file was downloaded (file name and SHA-256 in details)"),
    "airlock.file.view": ActionInfo(_REQUEST, "a file of a request was shown to a reviewer or its author"),
    "airlock.import.create": ActionInfo(_REQUEST, "an import request was created with its files"),
    "airlock.request.approve": ActionInfo(_REQUEST, "a request moved to approved (the reviews reached the project's quorum)"),
    "airlock.request.create": ActionInfo(_REQUEST, "an export request was created with its files and automatic checks"),
    "airlock.request.list": ActionInfo("scope:<queue>", "a user listed requests (the queue asked for and how many were shown)"),
    "airlock.request.reject": ActionInfo(_REQUEST, "a request moved to rejected"),
    "airlock.request.release": ActionInfo(_REQUEST, "an approved request was released: its files may leave"),
    "airlock.request.request_changes": ActionInfo(_REQUEST, "a reviewer sent a request back to its author for changes"),
    "airlock.request.resubmit": ActionInfo(_REQUEST, "the author resubmitted a request with changed files (a new round)"),
    "airlock.request.revoke": ActionInfo(_REQUEST, "a released request was revoked: its files may no longer be downloaded"),
    "airlock.request.start_review": ActionInfo(_REQUEST, "a checker started reviewing a submitted request"),
    "airlock.request.submit": ActionInfo(_REQUEST, "the author submitted a request for review"),
    "airlock.request.view": ActionInfo(_REQUEST, "a request was shown to a user"),
    "airlock.request.withdraw": ActionInfo(_REQUEST, "the author withdrew a request"),
    "airlock.review.submit": ActionInfo(_REQUEST, "a checker recorded a review (its verdict and comments in details)"),
    # The audit trail's own keys and anchors.
    "audit.anchor.forged": ActionInfo("anchors", "pds audit verify found anchor lines no check trusts (a bad MAC, a key the keyring lacks, a retired key after its rotation, a line without MAC after authenticated ones, no anchor): each line's number, SHA-256 and why in details (outcome failed); a later verification lists them without failing"),
    "audit.key.reseal": ActionInfo("registry | hub", "seals still made with the previous key after a rotation were made again with the key in force (re-sealed, already sealed, left broken in details)"),
    "audit.key.rotate": ActionInfo("audit-key:<new key id>", "the audit key was rotated: this entry is the last signed with the old key, the next ones with the new one (from_key, to_key, registry approvals re-sealed and left broken in details); denied: refused to a non-administrator"),
    # The command line.
    "cli.impersonate": ActionInfo(_USER, "an administrator ran a command as another user (pds --as)"),
    # The workspaces' Dask clusters (dask-gateway on Kubernetes).
    "dask.cluster.authorise": ActionInfo(_USER, "access decision: may this user start a Dask cluster for the project"),
    "dask.cluster.refusals": ActionInfo(_USER, "a workspace (or its user) asked the hub whether the worker pods of its Dask cluster refused the project's extract (the cluster and whether one did in details; denied: the first question past 10 in a minute, the rest refused unaudited)"),
    "dask.cluster.stop": ActionInfo(_USER, "a Dask cluster was stopped by the watcher: its user lost access to the project"),
    "dask.gateway.authenticate": ActionInfo("dask-gateway", "a client authenticated to dask-gateway (or was refused)"),
    # The demonstration platform.
    "demo.code": ActionInfo(_USER, "the second-factor code of a demonstration account was shown"),
    # Project extracts.
    "extract.build": ActionInfo(_PROJECT, "a project extract was built (lake versions, files and hashes in details)"),
    "extract.check": ActionInfo(_PROJECT, "the conformity check of a project extract ran (its findings in details)"),
    "extract.verify": ActionInfo(_PROJECT, "every file of a published extract was re-hashed against its manifest (the build, the files' fingerprint or why it failed in details)"),
    "extract.mount_refused": ActionInfo(_PROJECT, "a pod found the extract mounted in it is not the one published (its verify-extract init container, or a checked start or liveness probe): the workspace, the model check, the cohort link or the Dask worker did not run (what the pod was for, its exit code and message in details; a Dask worker pod's refusal is found by the hub's listing, once per refused run, with its cluster)"),
    "extract.show": ActionInfo(_USER, "access decision: may this output checker see the project's extract"),
    # The hub: accounts, logins and the hub's view of the registry.
    "hub.account.approve": ActionInfo(_USER, "an administrator approved an account: one pending since another administrator created or reset it (provisioned_by, second_administrator in details), or one revoked (its generation in details: the one its seal names, docs/adr/0013); denied: an approval refused (among the reasons: the account's seal missing or wrong, changed outside the platform)"),
    "hub.account.create": ActionInfo(_USER, "an administrator created an account (pending: waits for a second administrator under the two-person rule; the rule, bootstrap and the account's generation in details)"),
    "hub.account.password": ActionInfo(_USER, "an account's password was changed by its user (the account's generation in details); denied: refused for an account whose seal is missing or wrong"),
    "hub.account.seals.upgrade": ActionInfo("hub", "the accounts made before the seals of hub accounts were sealed once, as they stood (their names and their generation in details)"),
    "hub.account.reset": ActionInfo(_USER, "an administrator reset an account's password and second factor and ended its sessions (pending as for a creation; tokens deleted and the account's generation in details)"),
    "hub.account.revoke": ActionInfo(_USER, "an administrator revoked an account (its generation in details; account_seal when its seal was broken and stays so)"),
    "hub.login": ActionInfo(_USER, "a log-in to the hub, accepted or refused (the reason in details; among them, the account's seal missing or wrong: changed outside the platform)"),
    "hub.login.oidc": ActionInfo(_USER, "a log-in through the identity provider (OpenID Connect), accepted or refused"),
    "hub.identity.bound": ActionInfo(_USER, "the first sign-in through the identity provider bound the user name to its account (SHA-256 of the issuer and subject in details: subject); any other account is refused that name"),
    "hub.identity.unbound": ActionInfo(_USER, "an administrator freed the user name for another account of the identity provider (pds hub account unbind; the digest it was bound to in details), or was refused"),
    "hub.logout": ActionInfo(_USER, "a log-out from the hub"),
    "hub.oauth.authorize": ActionInfo("server:<hub user>/<server>", "denied: a signed-in person asked the hub's authorize endpoint for a server she may not access (answered as an unknown client, red team 23); the target names the server"),
    "hub.signup": ActionInfo(_USER, "a person asked for an account (waits for an administrator)"),
    "hub.socket.refused": ActionInfo(_USER, "a workspace's request through its socket to the hub was refused"),
    "hub.sync": ActionInfo("hub", "the hub's users and groups were brought in line with the registry"),
    "hub.workspace.grant": ActionInfo(_USER, "the hub made a person's workspace user of a project and granted her the role on it (ADR 17: hub user, role, and when it was checked in details)"),
    "hub.workspace.withdraw": ActionInfo(_USER, "the hub withdrew a person's role on her workspace user of a project she may no longer use (ADR 17)"),
    "hub.user.rename": ActionInfo(_USER, "a hub user was renamed"),
    # Data intake.
    "ingest.file": ActionInfo("<file name>", "one delivered file was loaded, quarantined in part, refused or corrected"),
    "ingest.run": ActionInfo("<delivery folder>", "an ingestion run ended (files, rows and lake versions in details)"),
    # The lake.
    "lake.expire": ActionInfo("<lake folder>", "old table versions were removed by the retention policy"),
    "lake.upgrade": ActionInfo("<lake folder>", "the lake was upgraded to the current table format"),
    # The package index of the workspaces.
    "packages.access.request": ActionInfo(_USER, "access decision: may this researcher ask for a package"),
    "packages.approve": ActionInfo("package:<requirement>", "an administrator approved a package request (scans in details)"),
    "packages.download": ActionInfo(_USER, "a workspace downloaded a package from the platform's index"),
    "packages.refuse": ActionInfo("package:<requirement>", "an administrator refused a package request"),
    "packages.request": ActionInfo("package:<requirement>", "a researcher asked for a package"),
    "packages.revoke": ActionInfo("package:<requirement>", "an approved package was withdrawn from the index"),
    # The platform's overview page.
    "platform.view": ActionInfo("platform", "an administrator opened the platform's overview"),
    # The end of a project.
    "project.halt": ActionInfo(_PROJECT, "an administrator halted a project: no workspace, extract or release"),
    "project.purge": ActionInfo(_PROJECT, "a closed project's data were purged (after a second administrator's approval)"),
    "project.purge.approve": ActionInfo(_PROJECT, "a second administrator approved the purge of a project"),
    "project.resume": ActionInfo(_PROJECT, "an administrator lifted a project's halt"),
    # Pseudonymisation keys.
    "pseudo.key.create": ActionInfo(_PROJECT, "a project's pseudonymisation key was created"),
    "pseudo.key.destroy": ActionInfo(_PROJECT, "a project's pseudonymisation key was destroyed"),
    # The registry of users, projects and memberships.
    "registry.apply": ActionInfo("registry", "the registry was made to match a registry file"),
    "registry.bootstrap.end": ActionInfo("registry", "the registry's bootstrap ended for good: its first administrator was approved, or an installation of an earlier release found one at its first write (their names in details); anchored with this reason outside the database"),
    "registry.member.add": ActionInfo(_USER, "a user was added to a project with a role"),
    "registry.member.approve": ActionInfo(_USER, "a second administrator approved a pending membership (role, expiry and granter in details); denied: an approval refused"),
    "registry.member.remove": ActionInfo(_USER, "a user was removed from a project"),
    "registry.member.update": ActionInfo(_USER, "a member's role or dates in a project changed"),
    "registry.project.close": ActionInfo(_PROJECT, "a project was closed"),
    "registry.seals.upgrade": ActionInfo("registry", "the approvals made before seals existed were sealed once, after the upgrade to revision 0012 (their numbers in details); denied: the upgrade's marker put back in the database, nothing sealed"),
    "registry.rule.update": ActionInfo("registry", "a process with a stricter setting raised a rule the registry keeps for every process (membership_approvals in details)"),
    "registry.project.create": ActionInfo(_PROJECT, "a project was created"),
    "registry.project.update": ActionInfo(_PROJECT, "a project's settings changed"),
    "registry.read": ActionInfo("registry", "an administrator read the registry (users, projects, members)"),
    "registry.user.approve_admin": ActionInfo(_USER, "a second administrator approved a pending administrator (who made them one in details); denied: an approval refused"),
    "registry.user.create": ActionInfo(_USER, "a user was created"),
    "registry.user.update": ActionInfo(_USER, "a user's details changed"),
    # Sandboxes and workspaces.
    "sandbox.exec": ActionInfo(_USER, "access decision: may this user run a command in the project's sandbox"),
    "sandbox.exit": ActionInfo(_USER, "a command run in a sandbox ended (its exit code in details)"),
    "sandbox.probe": ActionInfo(_USER, "the isolation probes ran inside a sandbox (their results in details)"),
    "workspace.admit": ActionInfo(_USER, "access decision: may this user enter the project's workspace"),
    "workspace.authorise": ActionInfo(_USER, "access decision: may this user's workspace start"),
    "workspace.bytes_refused": ActionInfo(_USER, "a workspace's notebook server asked to show more bytes than its daily served-bytes budget has left (refused)"),
    "workspace.bytes_reserved": ActionInfo(_USER, "bytes a workspace's notebook server may show were reserved from its daily served-bytes budget"),
    "workspace.refused": ActionInfo(_USER, "a workspace was refused before it started (the reason and the stage in details)"),
    "workspace.socket.replaced": ActionInfo(_USER, "the notebook server's socket was replaced inside a workspace: the hub refused to reach the new one"),
    "workspace.socket.throttled": ActionInfo(_USER, "a workspace went past the rate of requests on a socket the hub serves it (hub, gate, package index): refused with 429 or closed; one entry per workspace and minute, with the refusals counted since the last one"),
    "workspace.restart": ActionInfo(_USER, "the kubelet restarted a Kubernetes workspace's notebook container (its kernels ended): the cause in plain words (out of memory and the limit, the extract watch unanswered or unable to finish in time, the exit code), the pod, its uid and restart count, the pod's own message (bounded); one entry per pod and restart"),
    "workspace.start": ActionInfo(_USER, "a workspace started (its mounts and limits in details)"),
    "workspace.stop": ActionInfo(_USER, "a workspace stopped (at its user's request, on expiry or by the hub: its extract changed, its notebook ended, or it was restarted repeatedly; the cause in details)"),
}


def check_action(name: str) -> None:
    """Raise :class:`ValueError` unless ``name`` is a catalogued audit action (a programming error:
    the caller's code must be changed, not the data)."""
    if name not in ACTIONS:
        raise ValueError(f"audit action {name[:80]!r} is not in the catalogue of audit actions: add it to "
                         "ACTIONS in pds_kernel/audit_actions.py with what it records")


def render_reference() -> str:
    """The reference page of every audit action (Markdown), grouped by the part that writes it."""
    lines = ["# Audit actions", "",
             "Generated from `pds_kernel/audit_actions.py` by `python -m pds_kernel.audit_actions > "
             "docs/reference/audit-actions.md`; do not edit.", "",
             "Every entry of the audit trail names one of these actions. Each may be written with the "
             "outcome `ok`, `denied` (a refusal; the details give the reason) or `failed`. An *access "
             "decision* is written each time a user's rights on a project are checked. See "
             "[the audit trail](../audit.md) for how entries are chained, anchored and verified.", ""]
    for head, names in groupby(sorted(ACTIONS), key=lambda name: name.split(".", 1)[0]):
        lines += [f"## {head}", "", "| action | target | records |", "|---|---|---|"]
        lines += [f"| `{name}` | `{ACTIONS[name].target}` | {ACTIONS[name].records} |" for name in names]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_reference(), end="")
