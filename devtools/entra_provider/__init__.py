"""A local Entra-shaped sign-in provider (devtools only; never imported by the portal)."""

from __future__ import annotations

from devtools.entra_provider.demo import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TEAMS,
    DEMO_TENANT_ID,
    DEMO_USERS,
    DemoUser,
)
from devtools.entra_provider.server import EntraProvider, Tamper

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_TEAMS",
    "DEMO_TENANT_ID",
    "DEMO_USERS",
    "DemoUser",
    "EntraProvider",
    "Tamper",
]
