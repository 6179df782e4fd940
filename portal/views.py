"""Home page and the portal's own health endpoint."""

from __future__ import annotations

import django_rq
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

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
    """200 when the database and Redis answer, 503 otherwise (for load balancers and compose)."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        django_rq.get_connection("default").ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503)
