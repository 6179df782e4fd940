"""A real browser (Debian's Chromium driven by Playwright) signs in through the provider's page."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.entra_provider import DEMO_TEAMS
from portal.auth import tokens
from portal.models import AuditEvent
from provisioning.models import Membership, PrivateIndex, Team
from tests.entra_support import configure_portal

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def browser_page(entra_provider, tmp_path: Path, chromium):
    # Trust exactly the provider's certificate, nothing else.
    browser = chromium(f"--ignore-certificate-errors-spki-list={entra_provider.leaf_spki_sha256()}")
    page = browser.new_page()
    try:
        yield page
    except BaseException:
        page.screenshot(path=str(tmp_path / "failure.png"))
        raise


@pytest.fixture
def live_entra(entra_provider, live_server, settings):
    callback = f"{live_server.url}/auth/callback"
    entra_provider.reset()
    entra_provider.redirect_uris.append(callback)
    configure_portal(settings, entra_provider, live_server.url)
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain HTTP
    settings.CSRF_COOKIE_SECURE = False
    yield entra_provider
    entra_provider.redirect_uris.remove(callback)
    tokens.clear_caches()


def test_team_lead_signs_in_through_the_provider_page_and_sees_only_their_teams_indexes(
    live_server, live_entra, browser_page, transactional_db
):
    teams = [Team.objects.create(name=n, slug=s, entra_group_id=g) for n, s, g in DEMO_TEAMS]
    from django.contrib.auth.models import User

    someone = User.objects.create_user("someone")
    PrivateIndex.objects.create(name="ours-index", team=teams[0], requested_by=someone, state="ready")
    PrivateIndex.objects.create(name="theirs-index", team=teams[1], requested_by=someone, state="ready")
    page = browser_page

    page.goto(f"{live_server.url}/")
    assert "/auth/login/" in page.url
    page.click("#sign-in-with-microsoft")
    page.wait_for_selector("text=Pick a demo user")
    assert page.url.startswith(live_entra.endpoint("authorize"))
    page.click("button[data-user=lead]")
    page.wait_for_url(f"{live_server.url}/")

    body = page.content()
    assert "Lee Lead" in body
    assert "ours-index" in body
    assert "theirs-index" not in body
    assert Membership.objects.get(user__username="lee.lead@contoso.example").role == "lead"
    assert AuditEvent.objects.filter(action="auth.signed_in", actor_name="lee.lead@contoso.example").exists()

    page.click("text=Sign out")  # the portal's POST form, then the provider's end-session page
    page.wait_for_url(f"{live_server.url}/auth/signed-out/")
    page.goto(f"{live_server.url}/")
    assert "/auth/login/" in page.url
