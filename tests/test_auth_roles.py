"""App roles and groups from Entra are synced on every sign-in, and removed when gone."""

from __future__ import annotations

import dataclasses
import io

import pytest
from django.contrib.auth.models import Group, User

from devtools.entra_provider import DEMO_TEAMS
from portal.permissions import ADMIN_GROUP, is_portal_admin
from provisioning.models import Membership, Team
from tests.entra_support import sign_in, signed_in_user_id

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def demo_teams(db) -> list[Team]:
    return [Team.objects.create(name=n, slug=s, entra_group_id=g) for n, s, g in DEMO_TEAMS]


def sign_in_fresh(client, entra, key: str) -> User:
    client.logout()
    response = sign_in(client, entra, key).response
    assert response.status_code == 302
    return User.objects.get(pk=signed_in_user_id(client))


def test_publisher_role_added_then_removed_across_two_sign_ins(client, entra, demo_teams):
    member = entra.users["member"]
    entra.set_user(dataclasses.replace(member, roles=("Portal.Publisher",)))
    user = sign_in_fresh(client, entra, "member")
    assert Membership.objects.get(user=user, team=demo_teams[0]).role == "publisher"
    assert user.groups.filter(name="Portal.Publisher").exists()

    entra.set_user(member)
    user = sign_in_fresh(client, entra, "member")

    assert Membership.objects.get(user=user, team=demo_teams[0]).role == "member"
    assert not user.groups.filter(name="Portal.Publisher").exists()


def test_admin_role_added_then_removed_across_two_sign_ins(client, entra, demo_teams):
    member = entra.users["member"]
    entra.set_user(dataclasses.replace(member, roles=("Portal.Admin",)))
    user = sign_in_fresh(client, entra, "member")
    assert is_portal_admin(user)
    assert user.is_staff and user.is_superuser  # to maintain teams in the Django admin
    assert client.get("/audit/").status_code == 200

    entra.set_user(member)
    user = sign_in_fresh(client, entra, "member")

    assert not is_portal_admin(user)
    assert not user.is_staff and not user.is_superuser
    assert client.get("/audit/").status_code == 404


def test_team_lead_role_makes_the_user_lead_of_the_teams_of_their_groups(client, entra, demo_teams):
    user = sign_in_fresh(client, entra, "lead")

    assert list(Membership.objects.filter(user=user).values_list("team__slug", "role")) == [("data-platform", "lead")]
    assert user.groups.filter(name="Portal.TeamLead").exists()


def test_team_membership_is_removed_when_the_group_is_gone(client, entra, demo_teams):
    lead = entra.users["lead"]
    entra.set_user(dataclasses.replace(lead, groups=(demo_teams[0].entra_group_id, demo_teams[1].entra_group_id)))
    user = sign_in_fresh(client, entra, "lead")
    assert Membership.objects.filter(user=user).count() == 2

    entra.set_user(lead)
    user = sign_in_fresh(client, entra, "lead")

    assert list(Membership.objects.filter(user=user).values_list("team__slug", flat=True)) == ["data-platform"]


def test_groups_without_a_team_are_ignored(client, entra, demo_teams):
    lead = entra.users["lead"]
    entra.set_user(dataclasses.replace(lead, groups=("not-a-team-group",)))

    user = sign_in_fresh(client, entra, "lead")

    assert not Membership.objects.filter(user=user).exists()


def test_membership_in_a_team_not_mapped_to_entra_is_kept(client, entra, demo_teams):
    manual = Team.objects.create(name="Hand kept", slug="hand-kept")
    user = sign_in_fresh(client, entra, "member")
    Membership.objects.create(user=user, team=manual, role="member")

    user = sign_in_fresh(client, entra, "member")

    assert Membership.objects.filter(user=user, team=manual).exists()


def test_groups_not_managed_by_entra_roles_are_left_alone(client, entra, demo_teams):
    user = sign_in_fresh(client, entra, "member")
    other = Group.objects.create(name="Reviewers")
    user.groups.add(other)

    user = sign_in_fresh(client, entra, "member")

    assert user.groups.filter(name="Reviewers").exists()
    assert not user.groups.filter(name=ADMIN_GROUP).exists()


def test_ensure_demo_teams_creates_the_teams_and_restores_their_group_mapping(settings):
    from django.core.management import call_command

    settings.DEBUG = True
    Team.objects.create(name="Payments (renamed)", slug="payments", entra_group_id="stale")

    call_command("ensure_demo_teams", stdout=io.StringIO())

    teams = {t.slug: t for t in Team.objects.all()}
    assert {slug: teams[slug].entra_group_id for _n, slug, _g in DEMO_TEAMS} == {s: g for _n, s, g in DEMO_TEAMS}
    assert teams["data-platform"].name == "Data Platform"
    assert teams["payments"].name == "Payments (renamed)"  # an existing team keeps its name
