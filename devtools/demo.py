"""Demo teams and people for the laptop run. The local sign-in provider offers these users, and
their `groups` claims carry these team group ids, exactly as Entra ID would."""

from __future__ import annotations

DEMO_TENANT_ID = "11111111-2222-3333-4444-555555555555"

DEMO_TEAMS = [
    # (name, slug, Entra group object id)
    ("Data Platform", "data-platform", "6f1c3a52-0d7e-4c1b-9a64-0c5d2a7e1a01"),
    ("Payments", "payments", "6f1c3a52-0d7e-4c1b-9a64-0c5d2a7e1a02"),
]

DEMO_USERS = [
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
