"""A small real OpenID Connect provider on loopback, for the hub's sign-in tests.

Authorization code flow with PKCE (S256), client secret at the token endpoint, ID tokens signed
with RS256 by a key made at start (published at ``/jwks``), userinfo, and the discovery document.
Its "login page" is ``/authorize`` itself: the test names the user (``login_hint``) and how they
authenticated (``factors``, e.g. ``pwd,otp``; the ``amr`` of the ID token), and may ask for an
``acr`` level. ``forge_with`` makes it sign with another key (a forged token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado import httpserver, netutil, web

#: RFC 8176 methods of a password-only sign-in and of a sign-in with a one-time code.
PASSWORD_ONLY = ("pwd",)
WITH_OTP = ("pwd", "otp", "mfa")


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OpenIdProvider:
    def __init__(self, directory: dict[str, list[str]], client_id: str, client_secret: str,
                 claimed_names: dict[str, str] | None = None):
        self.directory, self.client_id, self.client_secret = directory, client_id, client_secret
        #: account -> the preferred_username it claims (default: its own name); the subject stays
        #: the account's (``id-<account>``): two accounts may claim one name
        self.claimed_names = dict(claimed_names or {})
        self.key, self.kid = new_key(), secrets.token_hex(4)
        self.forge_with: rsa.RSAPrivateKey | None = None
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}
        self.issuer = ""
        self.server: httpserver.HTTPServer | None = None
        provider = self

        class Discovery(web.RequestHandler):
            def get(self):
                i = provider.issuer
                self.finish({"issuer": i, "authorization_endpoint": f"{i}/authorize",
                             "token_endpoint": f"{i}/token", "userinfo_endpoint": f"{i}/userinfo",
                             "jwks_uri": f"{i}/jwks", "id_token_signing_alg_values_supported": ["RS256"],
                             "code_challenge_methods_supported": ["S256"]})

        class Keys(web.RequestHandler):
            def get(self):
                public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider.key.public_key()))
                self.finish({"keys": [{**public, "kid": provider.kid, "use": "sig", "alg": "RS256"}]})

        class Authorize(web.RequestHandler):
            def get(self):
                user = self.get_argument("login_hint")
                if self.get_argument("client_id") != provider.client_id or user not in provider.directory:
                    raise web.HTTPError(400)
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {
                    "user": user, "challenge": self.get_argument("code_challenge"),
                    "redirect_uri": self.get_argument("redirect_uri"),
                    "amr": [f for f in self.get_argument("factors", ",".join(WITH_OTP)).split(",") if f],
                    "acr": self.get_argument("acr", "")}
                self.redirect(f"{self.get_argument('redirect_uri')}?" + urlencode(
                    {"code": code, "state": self.get_argument("state")}))

        class Token(web.RequestHandler):
            def post(self):
                grant = provider.codes.pop(self.get_body_argument("code"), None)
                verifier = self.get_body_argument("code_verifier", "")
                if (grant is None or s256(verifier) != grant["challenge"]
                        or self.get_body_argument("client_secret") != provider.client_secret
                        or self.get_body_argument("redirect_uri") != grant["redirect_uri"]):
                    self.set_status(400)
                    self.finish({"error": "invalid_grant"})
                    return
                token = secrets.token_urlsafe(24)
                provider.tokens[token] = grant["user"]
                self.finish({"access_token": token, "token_type": "Bearer", "expires_in": 300,
                             "scope": "openid profile email groups", "id_token": provider.id_token(grant)})

        class UserInfo(web.RequestHandler):
            def get(self):
                token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
                user = provider.tokens.get(token)
                if user is None:
                    raise web.HTTPError(401)
                self.finish({"sub": f"id-{user}", "preferred_username": provider.claimed_names.get(user, user).upper(),
                             "email": f"{user}@example.org", "groups": provider.directory[user]})

        self.app = web.Application([
            (r"/\.well-known/openid-configuration", Discovery), (r"/jwks", Keys),
            (r"/authorize", Authorize), (r"/token", Token), (r"/userinfo", UserInfo)])

    def id_token(self, grant: dict) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": f"id-{grant['user']}", "aud": self.client_id,
                  "iat": now, "exp": now + 300, "auth_time": now, "amr": grant["amr"]}
        if grant["acr"]:
            claims["acr"] = grant["acr"]
        return jwt.encode(claims, self.forge_with or self.key, algorithm="RS256", headers={"kid": self.kid})

    def start(self) -> str:
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        self.server = httpserver.HTTPServer(self.app)
        self.server.add_sockets(sockets)
        self.issuer = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.issuer

    async def stop(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()
