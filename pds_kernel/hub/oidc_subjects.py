"""Which identity-provider account a hub user is: its subject, bound at the first OIDC sign-in.

The hub's user name, and so the registry user every permission is asked about (who authored an
export, who may review it as an output checker, who downloads it), comes from the provider's
``preferred_username`` claim (:attr:`pds_kernel.hub.oidc.PdsOAuthenticator.username_claim`).
OpenID Connect says that claim is neither unique nor stable (Core 1.0, section 5.7: "the RP MUST
NOT rely upon this value being unique"): a provider may let its users or its administrators change
it, a broker of several providers passes each one's own, an account deleted and made again takes
the name back. Only the issuer and the subject (``iss``, ``sub``) name one account. Before, a
researcher whose second account at the provider (or whose own, renamed) said ``olga`` signed in as
olga, an output checker of their project, and approved their own export as her: two reviews by one
person (tests/security/test_redteam12_idp_subject.py).

Now the first OIDC sign-in of a user name binds it to the account that made it, when that account
carries the verified email the registry holds for the user (a user without one is refused: red
team 13, the name went to whichever account claimed it first): the audit trail
records :data:`BOUND` (target ``user:NAME``) with the SHA-256 of the issuer and subject. Every later
sign-in under that name must come from the same account, read as the newest authenticated entry of
the trail (:meth:`pds_kernel.audit.AuditTrail.newest`, as the local accounts' generations are): any
other account is refused, audited as a denied ``hub.login`` that names both digests, and so is every
sign-in while the trail cannot be trusted about the binding (deny by default). The subject in the
user information must be the ID token's (section 5.3.2). An administrator moves a name to another
account of the provider (one deleted and made again) with ``pds hub account unbind NAME``
(:data:`UNBOUND`): the next sign-in binds it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from .. import permissions
from ..audit import AuditEvent, AuditTrail, Outcome
from ..audit_newest import Selector
from ..errors import NotFound, PermissionDenied

#: The audit action that binds a user name to one account of the provider (target ``user:NAME``).
BOUND = "hub.identity.bound"
#: The audit action by which an administrator frees a name for another account (target ``user:NAME``).
UNBOUND = "hub.identity.unbound"


def subject_digest(claims: Mapping) -> str | None:
    """SHA-256 of the verified ID token's issuer and subject, or None without a subject."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        return None
    iss = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
    return hashlib.sha256(f"{iss}\n{sub}".encode()).hexdigest()


def bound_digest(audit: AuditTrail, username: str) -> tuple[str | None, str | None]:
    """(the digest the name is bound to, or None when it is free; why the trail cannot say)."""
    found = audit.newest([Selector((BOUND, UNBOUND), f"user:{username}")])
    if found.problem:
        return None, found.problem
    if found.row is None or found.row.action == UNBOUND:
        return None, None
    try:
        digest = json.loads(found.row.details).get("subject")
    except (ValueError, AttributeError, RecursionError):
        digest = None
    if not isinstance(digest, str):
        return None, "its binding entry in the audit trail holds no subject"
    return digest, None


def first_binding_refusal(registry, username: str, userinfo: Mapping) -> str | None:
    """Why this account may not take a free name: its email must be the one the registry holds for
    the user, and not marked unverified by the provider. A user without an email in the registry
    is refused (deny by default: the name alone would go to whichever account claims it first)."""
    try:
        expected = (registry.get_user(username).email or "").strip()
    except NotFound:
        return f"{username} is no registry user"
    if not expected:
        return (f"this is the first sign-in of {username}, and the registry holds no email to recognise their "
                "identity provider account by: an administrator records it in the registry (pds project apply; "
                "pds project add-user NAME --email for a new user), then the user signs in again")
    email = userinfo.get("email")
    if (not isinstance(email, str) or email.strip().casefold() != expected.casefold()
            or userinfo.get("email_verified", True) is not True):
        return (f"this is the first sign-in of {username}, and the identity provider's account has not the "
                "verified email the registry holds for them: an administrator compares the registry user's email "
                "with the provider's account, then the user signs in again")
    return None


def check_subject(record, audit: AuditTrail, registry, username: str, claims: Mapping,
                  userinfo: Mapping | None) -> str | None:
    """Why ``username`` may not sign in with this account (None: it may; a first sign-in binds the
    name, recorded with ``record``, when :func:`first_binding_refusal` has nothing against it)."""
    userinfo = userinfo if isinstance(userinfo, Mapping) else {}
    digest = subject_digest(claims)
    if digest is None:
        return "the identity provider's ID token names no subject (sub): ask its administrator"
    info_sub = userinfo.get("sub")
    if info_sub is not None and info_sub != claims.get("sub"):
        return ("the identity provider's user information is about another account than its ID token "
                "(their sub differ): sign in again; if it persists, tell the provider's administrator")
    bound, problem = bound_digest(audit, username)
    if problem:
        return (f"the audit trail cannot say which account of the identity provider {username} is ({problem}): "
                "an administrator runs pds audit verify")
    if bound is None:
        why = first_binding_refusal(registry, username, userinfo)
        if why:
            return why
        record(AuditEvent(actor=username, action=BOUND, target=f"user:{username}", details={"subject": digest}))
        return None
    if bound != digest:
        return (f"the user name {username} belongs to another account of the identity provider (its first "
                "sign-in here): this account may not use it. If that account was deleted and made again, "
                f"an administrator frees the name: pds hub account unbind {username}")
    return None


def unbind(audit: AuditTrail, registry, actor: str, username: str) -> bool:
    """Free ``username`` for the next account of the provider that signs in with it (``pds hub account
    unbind``): a platform administrator, personally; audited. False when it was bound to nothing."""
    try:
        permissions.check_manage_hub_accounts(registry, actor, "free a user name for another account of the "
                                              "identity provider")
    except PermissionDenied as exc:
        audit.record(AuditEvent(actor=str(actor), action=UNBOUND, target=f"user:{username}",
                                outcome=Outcome.DENIED, details={"reason": str(exc)}))
        raise
    bound, problem = bound_digest(audit, username)
    audit.record(AuditEvent(actor=actor, action=UNBOUND, target=f"user:{username}",
                            details={"subject": bound, **({"problem": problem} if problem else {})}))
    return bound is not None
