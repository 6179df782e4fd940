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
_DATA_PLATFORM, _PAYMENTS = (group_id for _name, _slug, group_id in DEMO_TEAMS)


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


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser(
        "admin", "a0000000-0000-0000-0000-000000000001", "Ada Admin", "ada.admin@contoso.example",
        roles=("Portal.Admin",),
        description="Portal administrator: every index and the audit log.",
    ),
    DemoUser(
        "lead", "a0000000-0000-0000-0000-000000000002", "Lee Lead", "lee.lead@contoso.example",
        roles=("Portal.TeamLead",), groups=(_DATA_PLATFORM,),
        description="Team lead of Data Platform: requests and manages its indexes.",
    ),
    DemoUser(
        "publisher", "a0000000-0000-0000-0000-000000000003", "Pat Publisher", "pat.publisher@contoso.example",
        roles=("Portal.Publisher",), groups=(_DATA_PLATFORM,),
        description="Publisher in Data Platform: also uploads and deletes packages.",
    ),
    DemoUser(
        "member", "a0000000-0000-0000-0000-000000000004", "Max Member", "max.member@contoso.example",
        groups=(_DATA_PLATFORM,),
        description="Member of Data Platform: views indexes, gets read credentials.",
    ),
    DemoUser(
        "other-lead", "a0000000-0000-0000-0000-000000000005", "Olga Other-Lead", "olga.otherlead@contoso.example",
        roles=("Portal.TeamLead",), groups=(_PAYMENTS,),
        description="Team lead of Payments: requests and manages its indexes.",
    ),
)  # fmt: skip
