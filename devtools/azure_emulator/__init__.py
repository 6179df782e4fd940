"""A local stand-in for the Azure services the portal uses: ARM (resource groups, storage
accounts, file shares, container groups), the Azure Files REST API and an Entra-shaped token
endpoint, over HTTPS with a test CA. Never used in production."""

from __future__ import annotations

from .faults import Fault, RequestRecord
from .server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_SUBSCRIPTION_ID,
    DEFAULT_TENANT_ID,
    AzureEmulator,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_SUBSCRIPTION_ID",
    "DEFAULT_TENANT_ID",
    "AzureEmulator",
    "Fault",
    "RequestRecord",
]
