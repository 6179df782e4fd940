from __future__ import annotations

from django.http import HttpRequest

from portal.permissions import is_portal_admin


def portal(request: HttpRequest) -> dict:
    return {"is_portal_admin": is_portal_admin(request.user)}
