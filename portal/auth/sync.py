"""Turning validated id_token claims into a portal user and its Django groups.

Entra is the source of truth on every sign-in: app roles present in the `roles` claim are added
as Django groups and those gone are removed. Apps that keep more per user (provisioning's team
memberships) receive the roles and groups through portal.auth.signals.

Limitation: above 200 groups Entra sends an overage marker instead of `groups`. Configure the
app registration to emit only "groups assigned to the application"; an overage sign-in is
refused rather than guessed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from portal.auth.signals import user_signed_in_with_claims
from portal.models import EntraIdentity


class GroupsOverage(Exception):
    """The token names no groups because the user is in too many (Entra's overage claim)."""


def _is_overage(claims: dict[str, Any]) -> bool:
    return "groups" in (claims.get("_claim_names") or {}) or bool(claims.get("hasgroups"))


def _new_username(claims: dict[str, Any]) -> str:
    User = get_user_model()
    base = (claims.get("preferred_username") or claims["oid"])[:140]
    # A local account with the same name is never taken over: identities are (tid, oid).
    if not User.objects.filter(username=base).exists():
        return base
    return f"{base}#{claims['oid'][:8]}"


@transaction.atomic
def user_sync_from_claims(claims: dict[str, Any]) -> AbstractBaseUser:
    """The user for (tid, oid), created on first sign-in, with its groups synced and the
    user_signed_in_with_claims receivers (team memberships) run in the same transaction."""
    if _is_overage(claims):
        raise GroupsOverage("The account is in too many groups for the token to list them.")
    User = get_user_model()
    roles = {str(r) for r in claims.get("roles") or []}
    group_ids = {str(g) for g in claims.get("groups") or []}

    identity = (
        EntraIdentity.objects.select_for_update()
        .select_related("user")
        .filter(tid=claims["tid"], oid=claims["oid"])
        .first()
    )
    user = identity.user if identity else User(username=_new_username(claims))
    name = str(claims.get("name") or "")
    first, _, last = name.partition(" ")
    user.first_name, user.last_name = first[:150], last[:150]
    user.email = str(claims.get("email") or claims.get("preferred_username") or "")[:254]
    # Portal admins maintain teams and their group mapping in the Django admin; the flags
    # follow the app role and go when it goes.
    user.is_staff = user.is_superuser = settings.ENTRA_ADMIN_ROLE in roles
    if identity is None:
        user.set_unusable_password()
        user.save()
        identity = EntraIdentity(user=user, tid=claims["tid"], oid=claims["oid"])
    else:
        user.save(update_fields=["first_name", "last_name", "email", "is_staff", "is_superuser"])

    identity.roles = sorted(roles)
    identity.groups = sorted(group_ids)
    identity.last_sign_in_at = timezone.now()
    identity.save()

    _sync_role_groups(user, roles)
    user_signed_in_with_claims.send(sender=EntraIdentity, user=user, roles=roles, group_ids=group_ids)
    return user


def _sync_role_groups(user: AbstractBaseUser, roles: set[str]) -> None:
    managed = settings.ENTRA_ROLE_GROUPS
    wanted = {managed[role] for role in roles if role in managed}
    user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in sorted(wanted)))
    gone = set(managed.values()) - wanted
    user.groups.remove(*Group.objects.filter(name__in=gone))
