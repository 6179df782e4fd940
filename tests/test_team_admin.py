"""Admins map teams to Entra groups in the Django admin (memberships shown read-only) or with
`manage.py set_team_group`; nobody else reaches those pages."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from portal.models import AuditEvent
from provisioning.models import Team

pytestmark = pytest.mark.django_db

GROUP = "0b7e3c1a-52d4-4f7e-9a61-3c2d1e0f9a77"


def test_admin_lists_teams_with_their_group_and_member_count(portal_admin_client, team, lead, member):
    response = portal_admin_client.get("/django-admin/provisioning/team/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Data Platform" in page and "group-data" in page
    assert "Entra group object id" in page


def test_admin_changes_a_teams_group_and_the_change_is_audited(portal_admin_client, portal_admin, team):
    response = portal_admin_client.post(
        f"/django-admin/provisioning/team/{team.pk}/change/",
        {"name": "Data Platform", "slug": "data-platform", "entra_group_id": GROUP.upper(),
         "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
    )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[:2000]
    team.refresh_from_db()
    assert team.entra_group_id == GROUP
    event = AuditEvent.objects.get(action="team.group_changed")
    assert event.actor == portal_admin
    assert event.details == {"group": GROUP, "previous_group": "group-data"}


def test_admin_refuses_a_group_name_instead_of_an_object_id(portal_admin_client, team):
    response = portal_admin_client.post(
        f"/django-admin/provisioning/team/{team.pk}/change/",
        {"name": "Data Platform", "slug": "data-platform", "entra_group_id": "Data Platform Engineers",
         "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
    )  # fmt: skip

    assert response.status_code == 200
    assert "is not an Entra group object id" in response.content.decode()
    team.refresh_from_db()
    assert team.entra_group_id == "group-data"


def test_admin_creates_a_team(portal_admin_client):
    response = portal_admin_client.post(
        "/django-admin/provisioning/team/add/",
        {"name": "Search", "slug": "search", "entra_group_id": GROUP,
         "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
    )  # fmt: skip

    assert response.status_code == 302
    assert Team.objects.get(slug="search").entra_group_id == GROUP


def test_memberships_are_shown_read_only(portal_admin_client, team, lead):
    page = portal_admin_client.get(f"/django-admin/provisioning/team/{team.pk}/change/").content.decode()

    assert "synced from Entra at each sign-in" in page
    assert "lead" in page
    assert 'name="memberships-0-role"' not in page
    assert 'name="memberships-MAX_NUM_FORMS" value="0"' in page  # no "add another"


def test_team_admin_pages_answer_only_admins(client, lead_client, member_client, team):
    for other in (lead_client, member_client):
        response = other.get("/django-admin/provisioning/team/")
        assert response.status_code in {302, 403}
        assert response.status_code != 200
    assert client.get("/django-admin/provisioning/team/").status_code == 302


def test_command_sets_a_teams_group_for_automation(team):
    out = io.StringIO()

    call_command("set_team_group", "data-platform", GROUP, stdout=out)

    team.refresh_from_db()
    assert team.entra_group_id == GROUP
    assert f"Team data-platform is now mapped to {GROUP}." in out.getvalue()
    assert AuditEvent.objects.filter(action="team.group_changed", actor=None).count() == 1


def test_command_creates_the_team_when_asked(db):
    call_command("set_team_group", "search", GROUP, "--create", "Search", stdout=io.StringIO())

    assert Team.objects.get(slug="search").name == "Search"


def test_command_explains_an_unknown_team_and_a_bad_group_id(team):
    with pytest.raises(CommandError, match=r"No team with slug 'data'.*data-platform"):
        call_command("set_team_group", "data", GROUP)
    with pytest.raises(CommandError, match="not an Entra group object id"):
        call_command("set_team_group", "data-platform", "Data Platform Engineers")
