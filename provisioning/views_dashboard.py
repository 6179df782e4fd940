"""The admin dashboard: every index across teams, certificate and health, approvals, queues.

Portal admins only: a signed-in non-admin gets 404 on every URL here (the dashboard's existence
is not advertised), an anonymous visitor is sent to sign in.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from portal.permissions import portal_admin_required
from portal.redirects import safe_next
from provisioning import checks, dashboard, services
from provisioning.index_access import visible_index_or_404
from provisioning.models import CertificateCheck
from provisioning.views import perform_index_action

TEMPLATE = "provisioning/dashboard.html"


def _next(request: HttpRequest) -> str:
    """The dashboard page an action came from (a path on this portal), or the dashboard."""
    return safe_next(request, request.POST.get("next") or request.GET.get("next"), fallback=reverse("dashboard"))


def _back(request: HttpRequest) -> HttpResponse:
    return redirect(_next(request))


@portal_admin_required
@require_GET
def dashboard_home(request: HttpRequest) -> HttpResponse:
    filters = dashboard.Filters.from_query(request.GET)
    context = {"dash": dashboard.dashboard(filters), "states": dashboard.IndexState.choices,
               "cert_filters": dashboard.CERT_FILTERS, "here": request.get_full_path()}  # fmt: skip
    return render(request, TEMPLATE + ("#table" if request.htmx else ""), context)


@portal_admin_required
@require_GET
def dashboard_queues(request: HttpRequest) -> HttpResponse:
    template = "provisioning/dashboard_queues.html" + ("#panel" if request.htmx else "")
    return render(request, template, {"panel": dashboard.queue_panel()})


@portal_admin_required
@require_POST
def dashboard_requeue(request: HttpRequest, queue_name: str, job_id: str) -> HttpResponse:
    if dashboard.failed_job_requeue(queue_name=queue_name, job_id=job_id, actor=request.user, request=request):
        messages.success(request, f"Job {job_id} is back on the {queue_name} queue.")
    else:
        messages.error(request, f"Job {job_id} is no longer among the failed jobs of {queue_name}.")
    return redirect("dashboard_queues")


@portal_admin_required
@require_GET
def dashboard_index(request: HttpRequest, index_id: int) -> HttpResponse:
    """One index's check history (certificate details, files, health) and its admin actions."""
    index = dashboard.index_figures(visible_index_or_404(request, index_id).pk)
    history = list(CertificateCheck.objects.filter(index=index).order_by("-checked_at", "-id"))
    return render(request, "provisioning/dashboard_index.html", {"index": index, "history": history})


@portal_admin_required
@require_POST
def dashboard_check(request: HttpRequest, index_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    if index.is_gone:
        messages.error(request, f"{index.name} is {index.get_state_display().lower()}: there is nothing to check.")
        return _back(request)
    checks.index_check_enqueue(index=index)
    messages.success(request, f"A check of {index.name} is queued; refresh in a few seconds.")
    return _back(request)


def _action(request: HttpRequest, index_id: int, service: Callable, done: str, **kwargs) -> HttpResponse:
    perform_index_action(request, visible_index_or_404(request, index_id), service, done, **kwargs)
    return _back(request)


@portal_admin_required
@require_POST
def dashboard_retry(request: HttpRequest, index_id: int) -> HttpResponse:
    return _action(request, index_id, services.index_retry, "retrying from the step that failed.")


@portal_admin_required
@require_POST
def dashboard_restart(request: HttpRequest, index_id: int) -> HttpResponse:
    return _action(request, index_id, services.index_restart, "restarting.")


@portal_admin_required
@require_POST
def dashboard_approve(request: HttpRequest, index_id: int) -> HttpResponse:
    return _action(request, index_id, services.index_approve, "approved; provisioning starts.")


@portal_admin_required
@require_POST
def dashboard_deny(request: HttpRequest, index_id: int) -> HttpResponse:
    reason = request.POST.get("reason", "")[:2000]
    return _action(request, index_id, services.index_deny, "denied.", reason=reason)


@portal_admin_required
def dashboard_teardown(request: HttpRequest, index_id: int) -> HttpResponse:
    """GET asks for confirmation (type the index's name); POST tears the index down."""
    index = visible_index_or_404(request, index_id)
    if request.method == "POST":
        if request.POST.get("confirm_name") == index.name:
            perform_index_action(request, index, services.index_delete, "tearing down.")
            return _back(request)
        messages.error(request, "Type the index's name exactly to confirm the teardown.")
    return render(
        request,
        "provisioning/dashboard_teardown.html",
        {"index": index, "next": _next(request), "can_delete": index.can_delete},
    )
