from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class PortalAuthConfig(AppConfig):
    name = "portal.auth"
    # "auth" is django.contrib.auth's label.
    label = "portal_auth"
    verbose_name = "Entra sign-in"

    def ready(self) -> None:
        from django.contrib import admin

        from portal.auth import checks
        from portal.auth.views import admin_login

        # "Sign in with Microsoft" is the only way in: the Django admin's password form too.
        admin.site.login = admin_login

        # System checks do not run under gunicorn; refuse to start at all when production
        # would trust a non-Microsoft authority or a private CA.
        if not settings.DEBUG:
            fatal = [e for e in checks.entra_authority_check(None) if e.id in checks.FATAL_IDS]
            if fatal:
                raise ImproperlyConfigured("; ".join(f"{e.id}: {e.msg}" for e in fatal))
