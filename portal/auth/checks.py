"""A guard rail: with DEBUG off the portal only trusts Microsoft's own sign-in hosts."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

# Entra ID's public and sovereign cloud login hosts.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)
FATAL_IDS = {"portal_auth.E001", "portal_auth.E002"}
_MULTI_TENANT = {"", "common", "organizations", "consumers"}


@checks.register(checks.Tags.security, deploy=False)
def entra_authority_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[checks.CheckMessage] = []
    authority = urlsplit(settings.ENTRA_AUTHORITY)
    if authority.scheme != "https" or authority.hostname not in MICROSOFT_LOGIN_HOSTS or authority.port:
        errors.append(
            checks.Error(
                f"ENTRA_AUTHORITY {settings.ENTRA_AUTHORITY!r} is not a Microsoft login host.",
                hint="With DEBUG off use https://login.microsoftonline.com/<tenant id>; "
                "local providers are for DEBUG runs only.",
                id="portal_auth.E001",
            )
        )
    if settings.ENTRA_CA_BUNDLE:
        errors.append(
            checks.Error(
                "ENTRA_CA_BUNDLE is set: sign-in would trust a private CA.",
                hint="Unset ENTRA_CA_BUNDLE in production; Microsoft's hosts use public CAs.",
                id="portal_auth.E002",
            )
        )
    if settings.ENTRA_TENANT_ID.lower() in _MULTI_TENANT:
        errors.append(
            checks.Error(
                "ENTRA_TENANT_ID must name the organisation's tenant (its id).",
                id="portal_auth.E003",
            )
        )
    if not settings.ENTRA_CLIENT_ID or not (settings.ENTRA_CLIENT_SECRET or settings.ENTRA_CLIENT_CERTIFICATE_PFX):
        errors.append(
            checks.Error(
                "ENTRA_CLIENT_ID and a client secret or certificate are required.",
                id="portal_auth.E004",
            )
        )
    return errors
