"""The portal's own health endpoint."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from portal.dependencies import database_check, redis_check


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer, 503 naming the one that does not (for load
    balancers and compose); within about 4 s even when one accepts connections but hangs."""
    checks = {"database": database_check(), "redis": redis_check()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503)
