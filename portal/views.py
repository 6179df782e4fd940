"""Home page and the portal's own health endpoint."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from portal.dependencies import database_check, redis_check
from provisioning.models import PrivateIndex, teams_led_by


@login_required
def home(request: HttpRequest) -> HttpResponse:
    indexes = (
        PrivateIndex.objects.visible_to(request.user)
        .exclude(state="deleted")
        .select_related("team", "requested_by")
        .order_by("team__name", "name")
    )
    return render(
        request,
        "portal/home.html",
        {"indexes": indexes, "can_request": teams_led_by(request.user).exists()},
    )


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer, 503 naming the one that does not (for load
    balancers and compose); within about 4 s even when one accepts connections but hangs."""
    checks = {"database": database_check(), "redis": redis_check()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503)
