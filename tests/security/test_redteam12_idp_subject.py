"""Red team, twelfth round (12A): the author signs in as the output checker through the identity provider.

On Kubernetes the hub's user name, and with it every airlock decision (who authored a request, who
may review it, who downloads it), is the OIDC provider's ``preferred_username`` claim. That claim
is neither unique nor stable (OpenID Connect Core, section 5.7): a provider may let users or its
administrators rename an account, a broker passes several providers' names, an account deleted and
made again takes the name back. alice, a researcher of alpha-study, holds a second account at the
provider (or renames her own) whose ``preferred_username`` is ``olga``, an output checker of her
project. Each attempt signs in through a real authorization-code exchange with the small OpenID
provider on loopback (tests/k8s/oidc_provider.py, signed ID tokens; the two accounts have their
own ``sub``) into the real :class:`~pds_kernel.hub.oidc.PdsOAuthenticator`, then uses the name the
hub gave at the real airlock service. Each asserts the attack fails.

Two got through before the fix (pds_kernel/hub/oidc_subjects.py): the second account signed in as
olga (``model["name"] == "olga"``) after olga had signed in, and before she ever had; as olga it
gave the second review of alice's own export, which was approved and released. Now the first
sign-in of a name binds it to its account (issuer and subject, in the audit trail); another account
is refused, audited; a first sign-in must carry the email the registry holds, when it holds one.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import pytest_asyncio
from tornado import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))

from airlock_factories import files
from k8s.oidc_provider import OpenIdProvider
from k8s.test_oidc import CLIENT_ID, CLIENT_SECRET, sign_in

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.errors import PermissionDenied
from pds_kernel.hub.common import HubContext
from pds_kernel.hub.oidc import PdsOAuthenticator
from pds_kernel.hub.oidc_subjects import BOUND, UNBOUND, check_subject, unbind
from pds_kernel.registry import Registry, Role

pytestmark = pytest.mark.asyncio

PROJECT = "alpha-study"
CALLBACK = "https://pds.example.org/hub/oauth_callback"
SAFE_TABLE = b"age,count\n18-40,120\n40-65,230\n65+,310\n"
#: the provider's accounts: alice's second one ("alice-2") claims the name olga
DIRECTORY = {name: ["pds-users", f"pds-project-{PROJECT}"] for name in ("alice", "olga", "omar", "alice-2")}


@pytest_asyncio.fixture
async def provider():
    idp = OpenIdProvider(DIRECTORY, CLIENT_ID, CLIENT_SECRET, claimed_names={"alice-2": "olga"})
    idp.start()
    yield idp
    await idp.stop()


@pytest.fixture
def registry(runtime) -> Registry:
    reg = Registry.from_runtime(runtime)
    reg.upsert_user("root", "root", email="root@example.org", is_admin=True)
    for name in ("alice", "olga", "omar"):
        reg.upsert_user("root", name, email=f"{name}@example.org")
    reg.upsert_project("root", PROJECT, title="Alpha", start_date=date(2025, 1, 1), end_date=date(2099, 12, 31))
    far = date(2099, 12, 31)
    reg.add_member("root", PROJECT, "alice", Role.RESEARCHER, far)
    reg.add_member("root", PROJECT, "olga", Role.OUTPUT_CHECKER, far)
    reg.add_member("root", PROJECT, "omar", Role.OUTPUT_CHECKER, far)
    return reg


@pytest.fixture
def authenticator(settings, runtime, registry, provider):
    idp = provider.issuer
    return PdsOAuthenticator(
        context=HubContext(settings=settings, runtime=runtime, registry=registry), client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, authorize_url=f"{idp}/authorize", token_url=f"{idp}/token",
        userdata_url=f"{idp}/userinfo", oauth_callback_url=CALLBACK, allowed_groups={"pds-users"},
        jwks_url=f"{idp}/jwks", id_token_issuer=idp)


async def _hub_name(authenticator, issuer: str, account: str) -> str | None:
    """The hub user name ``account`` of the provider signs in as, or None when refused."""
    try:
        model = await sign_in(authenticator, issuer, account)
    except web.HTTPError as exc:
        assert exc.status_code == 403
        return None
    return model["name"] if model else None


def _refusals(runtime, name: str) -> list:
    return [e for e in runtime.audit.entries(action="hub.login")
            if e.outcome == "denied" and e.target == f"user:{name}"]


def _alice_exports_with(runtime, registry, second_reviewer: str | None) -> str:
    """alice's export, omar's approval, and the second one by whoever the hub says; its state."""
    service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=True), registry=registry)
    view = service.create("alice", PROJECT, files(("t.csv", SAFE_TABLE)), "why")
    service.review("omar", view.id, {0: {"decision": "approve"}})
    if second_reviewer is not None:
        service.review(second_reviewer, view.id, {0: {"decision": "approve"}})
    return service.get_request("alice", view.id).state


async def test_a_second_account_named_like_the_checker_after_she_signed_in(authenticator, provider, runtime,
                                                                           registry):
    assert await _hub_name(authenticator, provider.issuer, "olga") == "olga"  # her first sign-in binds
    name = await _hub_name(authenticator, provider.issuer, "alice-2")
    assert name is None, "alice's second account signed in as olga"
    assert "another account of the identity provider" in _refusals(runtime, "olga")[-1].details["reason"]
    assert _alice_exports_with(runtime, registry, name) == "under_review"
    assert await _hub_name(authenticator, provider.issuer, "olga") == "olga"  # olga herself still may


async def test_a_second_account_named_like_the_checker_before_she_ever_signed_in(authenticator, provider,
                                                                                 runtime, registry):
    """Trust on first use alone would bind olga's name to alice's account: the registry holds olga's
    email, and the first account to take the name must show it."""
    registry.upsert_user("root", "olga", email="olga@example.org")
    name = await _hub_name(authenticator, provider.issuer, "alice-2")
    assert name is None, "alice's second account took olga's name first"
    assert "verified email" in _refusals(runtime, "olga")[-1].details["reason"]
    assert _alice_exports_with(runtime, registry, name) == "under_review"
    assert await _hub_name(authenticator, provider.issuer, "olga") == "olga"
    assert await _hub_name(authenticator, provider.issuer, "alice-2") is None


async def test_a_second_account_takes_the_name_of_a_checker_without_email(authenticator, provider, runtime,
                                                                         registry):
    """Red team 13: with no email in olga's registry row, the first account to claim her name took
    it (trust on first use): alice's second account, then her second review. Now refused, and so is
    olga herself until an administrator records her email (deny by default)."""
    registry.upsert_user("root", "olga")  # the registry holds no email for her
    name = await _hub_name(authenticator, provider.issuer, "alice-2")
    assert name is None, "alice's second account took olga's name"
    assert "holds no email" in _refusals(runtime, "olga")[-1].details["reason"]
    assert _alice_exports_with(runtime, registry, name) == "under_review"
    assert await _hub_name(authenticator, provider.issuer, "olga") is None
    assert not runtime.audit.entries(action=BOUND)
    registry.upsert_user("root", "olga", email="olga@example.org")
    assert await _hub_name(authenticator, provider.issuer, "olga") == "olga"
    assert await _hub_name(authenticator, provider.issuer, "alice-2") is None


async def test_user_information_about_another_account_than_the_id_token(runtime, registry):
    """The name comes from the user information, the proof from the ID token: their subjects must agree."""
    claims = {"iss": "https://idp", "sub": "id-alice-2"}
    why = check_subject(runtime.audit.record, runtime.audit, registry, "olga", claims,
                        {"sub": "id-olga", "preferred_username": "olga"})
    assert why and "another account than its ID token" in why
    assert not runtime.audit.entries(action=BOUND)


async def test_an_id_token_without_a_subject(runtime, registry):
    why = check_subject(runtime.audit.record, runtime.audit, registry, "olga", {"iss": "https://idp"}, {})
    assert why and "no subject" in why


async def test_freeing_a_name_is_an_administrators_act(authenticator, provider, runtime, registry):
    """alice (a researcher) and olga (whose name it is) may not free it; root may, and the next
    account to sign in with the email the registry holds takes it (the provider's account made
    again: here alice-2, once root has recorded its email; freed alone, the name went to any account
    before red team 13)."""
    assert await _hub_name(authenticator, provider.issuer, "olga") == "olga"
    for who in ("alice", "olga"):
        with pytest.raises(PermissionDenied):
            unbind(runtime.audit, registry, who, "olga")
    assert [e.outcome for e in runtime.audit.entries(action=UNBOUND)] == ["denied", "denied"]
    assert await _hub_name(authenticator, provider.issuer, "alice-2") is None
    assert unbind(runtime.audit, registry, "root", "olga")
    assert await _hub_name(authenticator, provider.issuer, "alice-2") is None  # freed, but not its email
    registry.upsert_user("root", "olga", email="alice-2@example.org")
    assert await _hub_name(authenticator, provider.issuer, "alice-2") == "olga"  # the administrator's choice
    assert await _hub_name(authenticator, provider.issuer, "olga") is None
