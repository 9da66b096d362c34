"""OIDC sign-in through a real authorization-code + PKCE exchange with a small provider on loopback
(tests/k8s/oidc_provider.py: signed ID tokens). Every sign-in here uses a second factor unless the
test says otherwise (the hub refuses the others: the tests at the end)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import pytest_asyncio
from oauthenticator.oauth2 import _serialize_state
from tornado import web
from tornado.httpclient import AsyncHTTPClient

from pds_kernel.audit import AuditTrail
from pds_kernel.hub.common import HubContext
from pds_kernel.hub.oidc import ADMIN_GROUP, PdsOAuthenticator, map_idp_groups

from .oidc_provider import PASSWORD_ONLY, WITH_OTP, OpenIdProvider, new_key

pytestmark = pytest.mark.asyncio

CLIENT_ID, CLIENT_SECRET = "pds-workspace", "s3cret-for-tests"
CALLBACK = "https://pds.example.org/hub/oauth_callback"

#: the identity provider's directory: username → IdP groups
DIRECTORY = {
    "alice": ["pds-users", "pds-project-alpha-study", "pds-project-beta-study", "pds-admins"],
    "bob": ["pds-users", "pds-project-alpha-study", "pds-project-beta-study"],
    "mallory": ["staff"],                                     # no sign-in group
    "zed": ["pds-users", "pds-project-alpha-study"],          # not in the registry
}


@pytest_asyncio.fixture
async def provider():
    idp = OpenIdProvider(DIRECTORY, CLIENT_ID, CLIENT_SECRET)
    idp.start()
    yield idp
    await idp.stop()


@pytest_asyncio.fixture
async def idp(provider):
    return provider.issuer


class FakeLoginHandler:
    """The callback request JupyterHub's OAuthCallbackHandler would hand to the authenticator."""

    def __init__(self, code: str, verifier: str):
        self._code, self._state = code, _serialize_state({"state_id": "x", "code_verifier": verifier})

    def get_argument(self, name, default=None):
        return self._code if name == "code" else default

    def get_state_cookie(self):
        return self._state


@pytest.fixture
def authenticator(settings, runtime, registry, idp):
    context = HubContext(settings=settings, runtime=runtime, registry=registry)
    return PdsOAuthenticator(
        context=context, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        authorize_url=f"{idp}/authorize", token_url=f"{idp}/token", userdata_url=f"{idp}/userinfo",
        oauth_callback_url=CALLBACK, allowed_groups={"pds-users"}, idp_admin_groups={"pds-admins"},
        jwks_url=f"{idp}/jwks", id_token_issuer=idp,
    )


async def sign_in(authenticator: PdsOAuthenticator, idp: str, user: str, factors=WITH_OTP, acr: str = ""):
    """Run the browser's part (authorize: ``user`` signs in with ``factors``) then JupyterHub's
    (callback → token → userinfo → PdsOAuthenticator's checks)."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"client_id": CLIENT_ID, "redirect_uri": CALLBACK, "response_type": "code",
                       "state": "x", "code_challenge": challenge, "code_challenge_method": "S256",
                       "login_hint": user, "scope": "openid groups", "factors": ",".join(factors),
                       "acr": acr})
    response = await AsyncHTTPClient().fetch(f"{idp}/authorize?{query}", follow_redirects=False,
                                             raise_error=False)
    assert response.code == 302
    code = parse_qs(urlparse(response.headers["Location"]).query)["code"][0]
    return await authenticator.get_authenticated_user(FakeLoginHandler(code, verifier), None)


async def test_member_signs_in_with_projects_from_registry_and_idp(authenticator, idp, registry):
    registry.upsert_user("admin", "alice", email="alice@example.org", is_admin=True)
    model = await sign_in(authenticator, idp, "alice")
    assert model["name"] == "alice"  # normalised from the claim "ALICE"
    # IdP admin group and registry admin flag agree: the administrators' group, which holds the
    # narrow pds-admin role; never JupyterHub's built-in admin
    assert model["groups"] == ["alpha-study", "beta-study", ADMIN_GROUP]
    assert model["admin"] is False


async def test_groups_are_the_intersection(authenticator, idp, runtime):
    # bob: IdP grants alpha and beta, the registry only alpha → alpha; no admin
    model = await sign_in(authenticator, idp, "bob")
    assert model["groups"] == ["alpha-study"]
    assert not model["admin"]


async def test_idp_admin_without_registry_admin_is_not_admin(authenticator, idp):
    model = await sign_in(authenticator, idp, "alice")
    assert ADMIN_GROUP not in model["groups"] and not model["admin"]


async def test_registry_admin_without_idp_admin_is_not_admin(authenticator, idp, registry):
    registry.upsert_user("admin", "bob", email="bob@example.org", is_admin=True)  # bob is not in the IdP's pds-admins
    model = await sign_in(authenticator, idp, "bob")
    assert model["groups"] == ["alpha-study"] and not model["admin"]


class SignedInUser:
    """What refresh_user reads of a hub user (name, current groups)."""

    def __init__(self, name: str, groups: list[str]):
        self.name = name
        self.groups = [type("Group", (), {"name": g})() for g in groups]


async def test_refresh_keeps_admin_only_while_the_registry_agrees(authenticator, registry):
    # actor alice: an administrator changes her own flag (root stays one: the registry never
    # goes back to having none); root gives it back
    registry.upsert_user("alice", "alice", email="alice@example.org", is_admin=True)
    registry.upsert_user("alice", "root", email="root@example.org", is_admin=True)
    alice = SignedInUser("alice", ["alpha-study", "beta-study", ADMIN_GROUP])
    kept = await authenticator.refresh_user(alice)
    assert kept == {"name": "alice", "groups": ["alpha-study", "beta-study", ADMIN_GROUP], "admin": False}
    registry.upsert_user("alice", "alice", email="alice@example.org", is_admin=False)
    dropped = await authenticator.refresh_user(alice)
    assert dropped["groups"] == ["alpha-study", "beta-study"]
    # a refresh never adds the group (only a sign-in with the IdP's agreement does)
    registry.upsert_user("root", "alice", email="alice@example.org", is_admin=True)
    assert ADMIN_GROUP not in (await authenticator.refresh_user(SignedInUser("alice", ["alpha-study"])))["groups"]


async def test_a_workspace_users_refresh_follows_its_persons_group_and_membership(authenticator, registry):
    """``alice@alpha-study`` (ADR 17) never signs in: its refresh (its server's token, a spawn) is
    valid while alice holds the project's hub group and the registry's membership, its own groups
    untouched (``True``); refused otherwise. Names that are no workspace user go to the person's path."""
    from .test_spawner import FakeUser, hub_db

    db = hub_db({"alice": ["alpha-study", "beta-study"], "bob": ["alpha-study"]})
    assert await authenticator.refresh_user(FakeUser("alice@alpha-study", [], db)) is True
    assert await authenticator.refresh_user(FakeUser("bob@beta-study", [], db)) is False  # no group of beta
    assert await authenticator.refresh_user(FakeUser("carol@alpha-study", [], db)) is False  # never signed in
    registry.remove_member("admin", "alpha-study", "alice")
    assert await authenticator.refresh_user(FakeUser("alice@alpha-study", [], db)) is False  # the registry withdrew it
    assert await authenticator.refresh_user(SignedInUser("alice@alpha-study@x", ["alpha-study"])) is False


@pytest.mark.parametrize("setting", ["admin_users", "admin_groups"])
async def test_other_admin_settings_are_refused(settings, runtime, registry, setting):
    from traitlets import TraitError

    context = HubContext(settings=settings, runtime=runtime, registry=registry)
    with pytest.raises(TraitError, match="idp_admin_groups"):
        PdsOAuthenticator(context=context, **{setting: {"alice"}})


async def test_admin_group_is_never_a_project_id():
    from pds_kernel.errors import InvalidInput
    from pds_kernel.registry.names import check_project_id

    with pytest.raises(InvalidInput):
        check_project_id(ADMIN_GROUP)


async def test_user_without_sign_in_group_is_refused(authenticator, idp, runtime, registry):
    registry.upsert_user("admin", "mallory", email="mallory@example.org")
    assert await sign_in(authenticator, idp, "mallory") is None
    refused = [e for e in AuditTrail(runtime.sessions).entries() if e.outcome == "denied"]
    assert any(e.actor == "mallory" and "sign-in group" in e.details["reason"] for e in refused)


async def test_user_unknown_to_the_registry_is_refused(authenticator, idp):
    assert await sign_in(authenticator, idp, "zed") is None


async def test_a_forged_code_is_refused(authenticator):
    from tornado.httpclient import HTTPClientError

    with pytest.raises((HTTPClientError, web.HTTPError)):
        await authenticator.get_authenticated_user(FakeLoginHandler("forged", "verifier"), None)


async def test_map_idp_groups():
    grants = map_idp_groups(["pds-users", "pds-project-alpha-study", "pds-project-BAD_ID", "checkers"],
                            login_groups={"pds-users"}, project_prefix="pds-project-",
                            checker_groups={"checkers"})
    assert grants.may_login
    assert grants.projects == {"alpha-study"}
    assert grants.roles == {"researcher", "output-checker"}
    assert not map_idp_groups(["staff"], login_groups={"pds-users"}, project_prefix="p-").may_login


@pytest.mark.parametrize("section", ["GenericOAuthenticator", "PdsOAuthenticator"])
async def test_chart_oidc_settings_are_real_traits(section):
    """z2jh's schema accepts any key under hub.config: a typo would silently disable a setting."""
    from .test_chart import EXAMPLE, merged_values

    traits = PdsOAuthenticator.class_traits(config=True)
    for values in (merged_values(), merged_values(EXAMPLE)):
        for key in values["jupyterhub"]["hub"]["config"][section]:
            assert key in traits, f"hub.config.{section}.{key} is not a setting"


# ---- a second factor, shown by the ID token (pds_kernel/hub/second_factor.py) ---------------------------
def refusals(runtime) -> list:
    return [e for e in AuditTrail(runtime.sessions).entries() if e.action == "hub.login" and e.outcome == "denied"]


async def test_password_only_sign_in_is_refused_with_a_clear_message(authenticator, idp, runtime):
    with pytest.raises(web.HTTPError) as refused:
        await sign_in(authenticator, idp, "alice", factors=PASSWORD_ONLY)
    assert refused.value.status_code == 403
    message = refused.value.log_message % refused.value.args
    assert "did not use a second factor" in message and "['pwd']" in message and "mfa" in message
    assert [e.actor for e in refusals(runtime)] == ["alice"]


async def test_one_time_code_counts_when_configured(authenticator, idp):
    authenticator.required_amr = {"mfa", "otp"}
    model = await sign_in(authenticator, idp, "bob", factors=("pwd", "otp"))
    assert model["name"] == "bob"
    with pytest.raises(web.HTTPError):
        await sign_in(authenticator, idp, "bob", factors=("pwd", "kba"))


async def test_assurance_level_counts_when_configured(authenticator, idp):
    authenticator.required_amr, authenticator.required_acr = set(), {"urn:pds:loa:2fa"}
    assert (await sign_in(authenticator, idp, "bob", factors=PASSWORD_ONLY, acr="urn:pds:loa:2fa"))["name"] == "bob"
    with pytest.raises(web.HTTPError):
        await sign_in(authenticator, idp, "bob", factors=WITH_OTP, acr="urn:pds:loa:1")


async def test_no_factor_configured_refuses_everyone(authenticator, idp):
    authenticator.required_amr, authenticator.required_acr = set(), set()
    with pytest.raises(web.HTTPError) as refused:
        await sign_in(authenticator, idp, "alice")
    assert "names none" in refused.value.log_message % refused.value.args


async def test_id_token_signed_by_another_key_is_refused(authenticator, idp, provider):
    """A token claiming mfa, signed by a key the provider does not publish."""
    provider.forge_with = new_key()
    with pytest.raises(web.HTTPError) as refused:
        await sign_in(authenticator, idp, "alice")
    assert "not valid" in refused.value.log_message % refused.value.args


async def test_id_token_for_another_client_is_refused(authenticator, idp, provider):
    original = provider.id_token

    def for_another_client(grant):
        import jwt as pyjwt
        claims = pyjwt.decode(original(grant), options={"verify_signature": False})
        return pyjwt.encode({**claims, "aud": "another-app"}, provider.key, algorithm="RS256",
                            headers={"kid": provider.kid})

    provider.id_token = for_another_client
    with pytest.raises(web.HTTPError, match="403"):
        await sign_in(authenticator, idp, "alice")


async def test_chart_requires_a_second_factor():
    from .test_chart import EXAMPLE, merged_values

    for values in (merged_values(), merged_values(EXAMPLE)):
        section = values["jupyterhub"]["hub"]["config"]["PdsOAuthenticator"]
        assert set(section["required_amr"]) or set(section.get("required_acr") or [])
