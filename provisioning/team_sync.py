"""Team memberships follow Entra on every sign-in: teams come from the `groups` claim (group object
ids mapped to Team.entra_group_id) and the user's role in them from the app roles. Connected to
portal.auth's sign-in signal in ProvisioningConfig.ready()."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from provisioning.models import Membership, Team


def team_role_for(roles: set[str]) -> str:
    if settings.ENTRA_TEAM_LEAD_ROLE in roles:
        return Membership.Role.LEAD
    if settings.ENTRA_PUBLISHER_ROLE in roles:
        return Membership.Role.PUBLISHER
    return Membership.Role.MEMBER


def memberships_sync_on_sign_in(
    sender, *, user: AbstractBaseUser, roles: set[str], group_ids: set[str], **kwargs
) -> None:
    """Receiver of portal.auth.signals.user_signed_in_with_claims: the user is in exactly the
    mapped teams the `groups` claim names, with the role the app roles give."""
    role = team_role_for(roles)
    teams = list(Team.objects.filter(entra_group_id__in=group_ids).exclude(entra_group_id=""))
    for team in teams:
        Membership.objects.update_or_create(user=user, team=team, defaults={"role": role})
    # Only teams mapped to an Entra group are managed here; admins keep the others by hand.
    (Membership.objects.filter(user=user).exclude(team__entra_group_id="").exclude(team__in=teams).delete())
