"""The list of indexes (home page); request an index, watch it being built, manage it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from provisioning import services
from provisioning.forms import IndexRequestForm
from provisioning.index_access import visible_index_or_404
from provisioning.models import IndexState, InvalidTransition, PrivateIndex, teams_led_by


def _managed_index(request: HttpRequest, index_id: int) -> PrivateIndex:
    index = visible_index_or_404(request, index_id)
    if not index.can_manage(request.user):
        raise Http404("Not found")
    return index


@login_required
def home(request: HttpRequest) -> HttpResponse:
    indexes = (
        PrivateIndex.objects.visible_to(request.user)
        .exclude(state=IndexState.DELETED)  # a denied request stays listed: its team sees why
        .select_related("team", "requested_by")
        .order_by("team__name", "name")
    )
    return render(
        request,
        "portal/home.html",
        {"indexes": indexes, "can_request": teams_led_by(request.user).exists()},
    )


@login_required
def index_new(request: HttpRequest) -> HttpResponse:
    teams = teams_led_by(request.user)
    if not teams.exists():
        raise Http404("You lead no team, so you cannot request an index.")
    form = IndexRequestForm(request.POST or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        try:
            index = services.index_request(requested_by=request.user, request=request, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect(index)
    return render(request, "provisioning/index_new.html", {"form": form})


@login_required
@require_GET
def index_name_check(request: HttpRequest) -> HttpResponse:
    """Checks the name as the user types (htmx); the same rules run again on submit."""
    form = IndexRequestForm({"name": request.GET.get("name", "")}, teams=teams_led_by(request.user))
    form.is_valid()
    return render(request, "provisioning/index_new.html#name-feedback", {"form": form, "checked": True})


@login_required
def index_detail(request: HttpRequest, index_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    context = {
        "index": index,
        "steps": index.steps.all(),
        "resume_notice": services.index_resume_notice(index),
        "can_manage": index.can_manage(request.user),
        "can_publish": index.can_publish(request.user),
        # Clients must trust a private CA (the local driver's, an ACME test CA): offer its download.
        "has_ca": index.is_ready and services.index_ca_pem(index) is not None,
    }
    if request.htmx and request.GET.get("part") == "progress":
        response = render(request, "provisioning/index_detail.html#progress", context)
        if not index.is_active:
            # The work is over: the rest of the page (credentials, actions, tabs) changes too.
            response["HX-Refresh"] = "true"
        return response
    return render(request, "provisioning/index_detail.html", context)


def perform_index_action(request: HttpRequest, index: PrivateIndex, service, done: str, **kwargs) -> None:
    """Call a state-changing service for a POST and report the outcome as a message."""
    try:
        service(index=index, actor=request.user, request=request, **kwargs)
    except InvalidTransition as exc:
        messages.error(request, f"{index.name}: {exc}")
    except ValidationError as exc:
        messages.error(request, f"{index.name}: {' '.join(exc.messages)}")
    else:
        messages.success(request, f"{index.name}: {done}")


def _state_change(request: HttpRequest, index_id: int, service, done: str) -> HttpResponse:
    index = _managed_index(request, index_id)
    perform_index_action(request, index, service, done)
    return redirect(index)


@login_required
@require_POST
def index_retry(request: HttpRequest, index_id: int) -> HttpResponse:
    return _state_change(request, index_id, services.index_retry, "Retrying from the step that failed.")


@login_required
@require_POST
def index_restart(request: HttpRequest, index_id: int) -> HttpResponse:
    return _state_change(request, index_id, services.index_restart, "Restarting the index.")


@login_required
@require_POST
def index_delete(request: HttpRequest, index_id: int) -> HttpResponse:
    index = _managed_index(request, index_id)
    if request.POST.get("confirm_name") != index.name:
        messages.error(request, "Type the index's name to confirm the teardown.")
    else:
        perform_index_action(request, index, services.index_delete, "Tearing the index down.")
    return redirect(index)


@login_required
@require_GET
def index_ca_certificate(request: HttpRequest, index_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    pem = services.index_ca_pem(index)
    if not pem:
        raise Http404("This index uses a publicly trusted certificate, or has none yet.")
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{index.name}-ca.pem"'
    return response
