"""Small middlewares: the Content-Security-Policy header, and a one-line 503 when PostgreSQL or
Redis cannot be reached. (django-htmx's middleware sets `request.htmx`.)"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from portal.dependencies import outage_message

logger = logging.getLogger(__name__)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY
        return response


class DependencyOutageMiddleware:
    """A page that cannot reach PostgreSQL or Redis answers 503 with one line saying which,
    instead of a 500 with a traceback."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        message = outage_message(exception)
        if message is None:
            return None
        logger.error("%s %s: %s", request.method, request.path, message)
        return HttpResponse(f"{message} Try again in a minute.\n", status=503, content_type="text/plain; charset=utf-8")
