"""Sign-in with a second factor only: what the identity provider's ID token must show.

OpenID Connect reports how the user authenticated in two ID token claims:

* ``amr`` (RFC 8176): the methods used, e.g. ``["pwd", "otp"]`` or ``["pwd", "mfa"]``;
* ``acr``: the assurance level reached, a provider-specific name (e.g. Keycloak's level names,
  eIDAS ``http://eidas.europa.eu/LoA/substantial``).

A sign-in passes when the token's ``amr`` holds one of ``required_amr`` **or** its ``acr`` is one
of ``required_acr``. Both empty refuses every sign-in (deny by default: a configuration that
forgot the rule does not silently let single-factor logins in).

The token is checked as OIDC Core §3.1.3.7 says: audience = our client id, not expired, issuer
when configured, and its signature against the provider's published keys (``jwks_url``) when set.
Without ``jwks_url`` the token is trusted because the hub received it directly from the token
endpoint over TLS (§3.1.3.7 item 6), which is what OAuthenticator itself does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from ..errors import PermissionDenied

#: Signature algorithms accepted for ID tokens (never ``none``, never HMAC with a public key).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class FactorPolicy:
    required_amr: frozenset[str]
    required_acr: frozenset[str]

    @classmethod
    def of(cls, amr: Iterable[str], acr: Iterable[str]) -> FactorPolicy:
        return cls(frozenset(amr), frozenset(acr))

    def describe(self) -> str:
        parts = []
        if self.required_amr:
            parts.append("a method among " + ", ".join(sorted(self.required_amr)) + " (amr)")
        if self.required_acr:
            parts.append("an assurance level among " + ", ".join(sorted(self.required_acr)) + " (acr)")
        return " or ".join(parts)


def id_token_claims(id_token: str | None, *, client_id: str, jwks: dict | None = None,
                    issuer: str = "") -> dict:
    """The verified claims of ``id_token``; :class:`PermissionDenied` when it is missing or invalid.

    ``jwks`` is the provider's JSON Web Key Set; ``None`` skips the signature (token from TLS)."""
    if not id_token:
        raise PermissionDenied("the identity provider returned no ID token: add the scope 'openid' "
                               "to the hub's OAuth client")
    options = {"require": ["exp", "aud"], "verify_signature": jwks is not None}
    try:
        key = None
        if jwks is not None:
            kid = jwt.get_unverified_header(id_token).get("kid")
            keys = [k for k in jwt.PyJWKSet.from_dict(jwks).keys if kid is None or k.key_id == kid]
            if not keys:
                raise jwt.InvalidTokenError(f"no key {kid!r} in the provider's key set")
            key = keys[0].key
        return jwt.decode(id_token, key=key, algorithms=list(ALGORITHMS), audience=client_id,
                          issuer=issuer or None, options=options, leeway=30)
    except (jwt.InvalidTokenError, jwt.PyJWKError, json.JSONDecodeError, ValueError) as exc:
        raise PermissionDenied(f"the identity provider's ID token is not valid ({exc}): sign in again") from None


def check_second_factor(claims: dict, policy: FactorPolicy) -> None:
    """Raise :class:`PermissionDenied` unless the ID token ``claims`` show a second factor."""
    if not policy.required_amr and not policy.required_acr:
        raise PermissionDenied("the hub requires a second factor but names none: the administrators "
                               "must set PdsOAuthenticator.required_amr or required_acr")
    amr = claims.get("amr") or []
    amr = {amr} if isinstance(amr, str) else {m for m in amr if isinstance(m, str)}
    acr = claims.get("acr")
    if amr & policy.required_amr or (isinstance(acr, str) and acr in policy.required_acr):
        return
    shown = f"methods {sorted(amr) or 'none'}" + (f", level {acr!r}" if acr else "")
    raise PermissionDenied(
        "Your sign-in did not use a second factor, which this platform requires for health data "
        f"(your identity provider reported {shown}; required: {policy.describe()}). Sign out of "
        "your institution's login page, sign in again with your second factor (authenticator app, "
        "security key or SMS code), then come back. If your institution offers none, ask the PDS "
        "administrators.")
