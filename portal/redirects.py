"""Where a `next` parameter may send the browser: only to a path on this portal."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request: HttpRequest, candidate: str | None, fallback: str | None = None) -> str:
    """`candidate` if it is a path on this portal, else `fallback` (the home page by default)."""
    fallback = fallback or reverse(settings.LOGIN_REDIRECT_URL)
    # Django's check refuses other schemes and hosts ("//host", "///host"). It allows relative
    # paths and looks for control characters only at the start (urlsplit drops tabs and
    # newlines anywhere), and browsers read backslashes as slashes: those are refused here.
    if not candidate or not candidate.startswith("/") or "\\" in candidate or any(ord(ch) < 32 for ch in candidate):
        return fallback
    if not url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}, require_https=False):
        return fallback
    return candidate
