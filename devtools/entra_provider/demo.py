"""The demo tenant, app registration, teams and users the local provider serves.

Fixed identifiers so a laptop database keeps working across provider restarts: the portal keys
users on (tid, oid) and maps teams by Entra group object id, so a user's `groups` claim names
the group ids of the demo teams below, exactly as Entra would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEMO_TENANT_ID = "11111111-2222-3333-4444-555555555555"
DEMO_CLIENT_ID = "3f0c9a52-6a3e-4b8f-8c1d-00000000c1a0"
# Only ever used against the local provider; a real app registration has its own secret.
DEMO_CLIENT_SECRET = "local-provider-demo-secret"

DEMO_TEAMS = [
    # (name, slug, Entra group object id): `make run` creates these Team rows.
    ("Data Platform", "data-platform", "6f1c3a52-0d7e-4c1b-9a64-0c5d2a7e1a01"),
    ("Payments", "payments", "6f1c3a52-0d7e-4c1b-9a64-0c5d2a7e1a02"),
]
DEMO_GROUPS = {slug: group_id for _name, slug, group_id in DEMO_TEAMS}

_PEOPLE = [
    # (oid, preferred_username, name, app roles, group ids)
    ("a0000000-0000-0000-0000-000000000001", "ada.admin@contoso.example", "Ada Admin", ["Portal.Admin"], []),
    (
        "a0000000-0000-0000-0000-000000000002", "lee.lead@contoso.example", "Lee Lead",
        ["Portal.TeamLead"], [DEMO_TEAMS[0][2]],
    ),
    (
        "a0000000-0000-0000-0000-000000000003", "pat.publisher@contoso.example", "Pat Publisher",
        ["Portal.Publisher"], [DEMO_TEAMS[0][2]],
    ),
    ("a0000000-0000-0000-0000-000000000004", "max.member@contoso.example", "Max Member", [], [DEMO_TEAMS[0][2]]),
    (
        "a0000000-0000-0000-0000-000000000005", "olga.otherlead@contoso.example", "Olga Other-Lead",
        ["Portal.TeamLead"], [DEMO_TEAMS[1][2]],
    ),
]  # fmt: skip


@dataclass(frozen=True)
class DemoUser:
    key: str
    oid: str
    name: str
    preferred_username: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    description: str = ""
    extra_claims: dict = field(default_factory=dict)


def _describe(roles: list[str], groups: list[str]) -> tuple[str, str]:
    teams = ", ".join(name for name, _slug, group_id in DEMO_TEAMS if group_id in groups) or "no team"
    if "Portal.Admin" in roles:
        return "admin", "Portal administrator: every index and the audit log."
    if "Portal.TeamLead" in roles:
        first = groups and groups[0] == DEMO_TEAMS[0][2]
        return ("lead" if first else "other-lead"), f"Team lead of {teams}: requests and manages its indexes."
    if "Portal.Publisher" in roles:
        return "publisher", f"Publisher in {teams}: also uploads and deletes packages."
    return "member", f"Member of {teams}: views indexes, gets read credentials."


def _users() -> tuple[DemoUser, ...]:
    users = []
    for oid, username, name, roles, groups in _PEOPLE:
        key, description = _describe(roles, groups)
        users.append(DemoUser(key, oid, name, username, tuple(roles), tuple(groups), description))
    return tuple(users)


DEMO_USERS: tuple[DemoUser, ...] = _users()
