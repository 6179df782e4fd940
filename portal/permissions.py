"""Who is a portal admin: the one check behind admin-only pages, the admin navigation and the
services that only admins may call. Pure user checks, so every app can use them."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.http import Http404

# The Django group of portal admins (the Entra app role maps to it at sign-in).
ADMIN_GROUP = "Portal.Admin"


def is_portal_admin(user) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_portal_admin", None)
    if cached is None:
        cached = user.groups.filter(name=ADMIN_GROUP).exists()
        user._portal_admin = cached
    return cached


def portal_admin_required(view: Callable) -> Callable:
    """For admin-only views: sign-in first, then 404 for everyone who is not a portal admin."""

    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_portal_admin(request.user):
            raise Http404("Not found")
        return view(request, *args, **kwargs)

    return wrapped
