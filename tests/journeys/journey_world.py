"""The world of the role journeys: one real hub (local mode, airlock on) per test module, with a
researcher, two output checkers, a member of another project, a non-member and an administrator,
all with accounts made as ``pds hub account add`` makes them; and a real Chromium.

Shared by tests/journeys/test_role_journeys.py and tests/security/test_journeys.py."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from chromium import CHROMIUM, browser
from hubfixtures import (
    OTHER_PROJECT,
    PASSWORD,
    PROJECT,
    Hub,
    current_totp,
    free_port_block,
    make_world,
    screenshot_dir,
    write_claims_extract,
)
from published import publish_by_hand

from pds_kernel.hashing import sha256_file
from pds_kernel.hub.local import provision_account

GATE = "/services/airlock/"
RESEARCHER, CHECKERS, OUTSIDER, NON_MEMBER, ADMIN = "alice", ("carol", "erin"), "bob", "dave", "root"
EXTRACT_BUILD, LAKE_SNAPSHOT = "20261201T090000Z-a1b2c3", "lake-7f3e2a"
#: A checker of the other project only.
OTHER_CHECKER = "olga"

__all__ = ["CHROMIUM", "GATE", "PASSWORD", "PROJECT", "OTHER_PROJECT", "Hub", "current_totp",
           "screenshot_dir", "journey_world", "login", "browser"]


@contextmanager
def journey_world():
    """Start the hub (airlock on) in a short /tmp directory; yield (hub, secrets by user)."""
    if shutil.which("bwrap") is None:
        import pytest
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="pdsj", dir="/tmp"))
    hub = make_world(root, free_port_block())
    registry, expiry = hub.registry, date.today() + timedelta(days=100)
    extract = hub.settings.paths.projects / PROJECT / "extract"
    extract.unlink()  # make_world's extract: this one replaces it, published as a build publishes it
    write_claims_extract(extract)
    (extract / "manifest.json").write_text(json.dumps({  # as the extract builder writes it
        "format": 1, "project": PROJECT, "build_id": EXTRACT_BUILD, "built_at": "2026-12-01T09:00:00+00:00",
        "lake_snapshot": LAKE_SNAPSHOT, "persons": 60,
        "tables": {"ER_PRS_F": {"file": "ER_PRS_F.parquet", "sha256": sha256_file(extract / "ER_PRS_F.parquet")}}}))
    publish_by_hand(hub.runtime, PROJECT, actor="root", build_id=EXTRACT_BUILD)
    for name in (*CHECKERS, OTHER_CHECKER):
        registry.upsert_user("root", name)
    for name in CHECKERS:
        registry.add_member("root", PROJECT, name, "output-checker", expiry)
    registry.add_member("root", OTHER_PROJECT, OTHER_CHECKER, "output-checker", expiry)
    users = (RESEARCHER, *CHECKERS, OUTSIDER, NON_MEMBER, ADMIN, OTHER_CHECKER)
    secrets = {u: provision_account(hub.settings, registry, u, PASSWORD, actor="root") for u in users}
    previous = os.environ.get("PDS_HUB_AIRLOCK")
    os.environ["PDS_HUB_AIRLOCK"] = "on"
    try:
        hub.start(timeout=120)
        yield hub, secrets
    finally:
        if previous is None:
            os.environ.pop("PDS_HUB_AIRLOCK", None)
        else:
            os.environ["PDS_HUB_AIRLOCK"] = previous
        hub.stop()
        hub.runtime.close()
        shutil.rmtree(root, ignore_errors=True)


def login(chromium, hub: Hub, user: str, secret: str, *, screenshot: str | None = None):
    """A new browser context signed in as ``user`` (password + second-factor code); its page."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.fill("input[name='2fa']", current_totp(secret))
    if screenshot:
        page.screenshot(path=str(screenshot_dir() / screenshot))
    page.click("#login_submit")
    page.wait_for_url("**/hub/home", timeout=60_000)
    return page
