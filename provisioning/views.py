"""Request an index, watch it being built, manage it and its credentials."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from provisioning import services
from provisioning.drivers.base import get_driver
from provisioning.forms import CredentialForm, IndexRequestForm
from provisioning.models import IndexCredential, InvalidTransition, PrivateIndex, teams_led_by
from provisioning.snippets import client_snippets


def _visible_index(request: HttpRequest, index_id: int) -> PrivateIndex:
    """The index if the user may see it; 404 otherwise, so other teams' indexes do not leak."""
    return get_object_or_404(PrivateIndex.objects.visible_to(request.user).select_related("team"), pk=index_id)


def _managed_index(request: HttpRequest, index_id: int) -> PrivateIndex:
    index = _visible_index(request, index_id)
    if not index.can_manage(request.user):
        raise Http404("Not found")
    return index


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
    index = _visible_index(request, index_id)
    context = {
        "index": index,
        "steps": index.steps.all(),
        "can_manage": index.can_manage(request.user),
        "can_publish": index.can_publish(request.user),
        "credentials": index.credentials.filter(revoked_at=None).select_related("created_by"),
        "credential_form": CredentialForm(),
    }
    template = "provisioning/index_detail.html"
    if request.htmx and request.GET.get("part") == "progress":
        template += "#progress"
    return render(request, template, context)


def _state_change(request: HttpRequest, index_id: int, service, done: str) -> HttpResponse:
    index = _managed_index(request, index_id)
    try:
        service(index=index, actor=request.user, request=request)
    except InvalidTransition as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
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
        return redirect(index)
    return _state_change(request, index_id, services.index_delete, "Tearing the index down.")


@login_required
@require_POST
def credential_create(request: HttpRequest, index_id: int) -> HttpResponse:
    """Creates a token and shows its password once, in this response only."""
    index = _visible_index(request, index_id)
    form = CredentialForm(request.POST)
    context: dict = {"index": index, "credential_form": form}
    if form.is_valid():
        kind = form.cleaned_data["kind"]
        if kind == IndexCredential.Kind.PUBLISH and not index.can_publish(request.user):
            raise Http404("Not found")
        try:
            credential, password = services.credential_create(
                index=index, kind=kind, label=form.cleaned_data["label"], actor=request.user, request=request
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            ca_file = f"{index.name}-ca.pem" if get_driver().name == "local" else None
            context.update(
                new_credential=credential,
                password=password,
                snippets=client_snippets(
                    index_url=index.url, username=credential.username, password=password,
                    ca_file=ca_file, publish=kind == IndexCredential.Kind.PUBLISH,
                ),
            )  # fmt: skip
    response = render(request, "provisioning/credential_created.html", context)
    response["Cache-Control"] = "no-store"  # the password must not stay in any cache
    return response


@login_required
@require_POST
def credential_revoke(request: HttpRequest, index_id: int, credential_id: int) -> HttpResponse:
    index = _visible_index(request, index_id)
    credential = get_object_or_404(index.credentials, pk=credential_id)
    allowed = index.can_manage(request.user) or credential.created_by_id == request.user.pk
    if not allowed:
        raise Http404("Not found")
    services.credential_revoke(credential=credential, actor=request.user, request=request)
    messages.success(request, f"Revoked {credential.username}. It stops working at once.")
    return redirect(index)


@login_required
@require_GET
def index_ca_certificate(request: HttpRequest, index_id: int) -> HttpResponse:
    index = _visible_index(request, index_id)
    pem = get_driver().ca_certificate_pem(services.index_spec(index)) if index.deployment else None
    if not pem:
        raise Http404("This index uses a publicly trusted certificate, or has none yet.")
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{index.name}-ca.pem"'
    return response
