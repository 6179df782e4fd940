"""No stale status: times are shown with what was checked, torn-down indexes show no live status
or actions, the team filter lists every team, and file counts come from the portal's records."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from packages_ui.models import PackageFile
from provisioning.models import CertificateCheck, IndexHealth, IndexState, PrivateIndex, Team

pytestmark = pytest.mark.django_db

PLACEMENT = {"hostname": "localhost", "https_port": 1, "http_port": 2, "read_port": 3, "publish_port": 4,
             "tls": "internal", "resources": {}}  # fmt: skip


def checked_index(team, lead, *, name: str, state: str, minutes_ago: int = 7, package_count: int = 0) -> PrivateIndex:
    index = PrivateIndex.objects.create(name=name, team=team, requested_by=lead, state=state, deployment=PLACEMENT)
    now = timezone.now()
    check = CertificateCheck.objects.create(
        index=index, checked_at=now - dt.timedelta(minutes=minutes_ago), host="localhost", port=1, status="valid",
        reason="ok", issuer="CN=Caddy Local Authority", not_after=now + dt.timedelta(days=30),
        container_state="running", package_count=package_count, storage_bytes=0,
    )  # fmt: skip
    IndexHealth.objects.create(index=index, latest=check, cert_status=check.status, cert_not_after=check.not_after)
    return index


def add_files(index: PrivateIndex, count: int) -> None:
    for n in range(count):
        PackageFile.objects.create(index=index, project=f"p{n}", version="1.0", filename=f"p{n}-1.0-py3-none-any.whl",
                                   identity=f"wheel:p{n}:1::py3-none-any", kind="wheel", size=1000,
                                   sha256="0" * 64, state="live")  # fmt: skip


def test_dashboard_says_when_each_certificate_was_checked(portal_admin_client, team, lead):
    checked_index(team, lead, name="fresh", state=IndexState.READY, minutes_ago=7)

    page = portal_admin_client.get(reverse("dashboard")).content.decode()

    assert "checked 7\xa0minutes ago" in page


def test_a_torn_down_index_shows_no_live_status_and_no_check_button(portal_admin_client, team, lead):
    gone = checked_index(team, lead, name="gone", state=IndexState.DELETED)

    listing = portal_admin_client.get(reverse("dashboard"), {"state": "deleted"}).content.decode()
    row = listing[listing.index(f'id="index-{gone.pk}"') :].split("</tr>", 1)[0]
    detail = portal_admin_client.get(reverse("dashboard_index", args=[gone.pk])).content.decode()

    assert "Torn down" in row
    for live in ("Valid", "running", "Check now", "Restart"):
        assert live not in row
    assert "Check now" not in detail
    assert "Last check before deleted" in detail and "torn down" in detail


def test_check_now_on_a_torn_down_index_queues_nothing(portal_admin_client, team, lead, run_jobs):
    gone = checked_index(team, lead, name="gone", state=IndexState.DELETED)

    response = portal_admin_client.post(reverse("dashboard_check", args=[gone.pk]), follow=True)

    assert "nothing to check" in response.content.decode()
    assert run_jobs("default") == 0


def test_team_filter_lists_every_team_even_without_shown_indexes(portal_admin_client, team, lead, other_team):
    checked_index(team, lead, name="only-one-team", state=IndexState.READY)
    Team.objects.create(name="New Team", slug="new-team")

    page = portal_admin_client.get(reverse("dashboard")).content.decode()

    for slug in ("data-platform", "payments", "new-team"):
        assert f'<option value="{slug}"' in page


def test_admin_index_page_counts_the_files_the_portal_holds_not_the_last_checks(portal_admin_client, team, lead):
    index = checked_index(team, lead, name="six-files", state=IndexState.READY, package_count=0)
    add_files(index, 6)

    page = portal_admin_client.get(reverse("dashboard_index", args=[index.pk])).content.decode()

    assert "6 files, 5.9\xa0KB" in page
    assert "Files on the package share at that check" in page
