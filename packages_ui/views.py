"""The package page of an index: listing, upload, delete, restart, resync, mirror, tokens."""

from __future__ import annotations

from itertools import groupby

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from packages_ui import services, upload_api
from packages_ui.forms import MirrorForm
from packages_ui.models import MirrorRun, PackageFile
from packages_ui.receiving import HashingUploadHandler, receive_raw_body, received_from_form, too_large_error
from packages_ui.validation import DistributionError
from portal.permissions import is_portal_admin
from provisioning import services as provisioning_services
from provisioning.forms import CredentialForm
from provisioning.index_access import visible_index_or_404
from provisioning.models import IndexCredential, PrivateIndex
from provisioning.snippets import client_snippets
from provisioning.views import perform_index_action


def _require_publisher(request: HttpRequest, index: PrivateIndex) -> None:
    if not index.can_publish(request.user):
        raise PermissionDenied("Only publishers and team leads can change this index's packages.")


def _publishable_index(request: HttpRequest, index_id: int) -> PrivateIndex:
    index = visible_index_or_404(request, index_id)
    _require_publisher(request, index)
    return index


def _page_url(index: PrivateIndex) -> str:
    return reverse("packages", args=[index.pk])


def _projects(index: PrivateIndex, query: str) -> list[dict]:
    """Projects → versions (newest first) → files, filtered by a substring of project or file."""
    files = index.package_files.present().select_related("uploaded_by")
    if query:
        files = files.filter(Q(filename__icontains=query) | Q(project__icontains=query))
    projects = []
    for project, project_files in groupby(sorted(files, key=lambda f: f.project), key=lambda f: f.project):
        by_version = sorted(project_files, key=lambda f: (f.sort_version, f.filename), reverse=True)
        versions = [{"version": v, "files": list(fs)} for v, fs in groupby(by_version, key=lambda f: f.version)]
        for version in versions:
            version["yanked"] = all(f.yanked for f in version["files"])
        projects.append({"name": project, "versions": versions})
    return projects


@login_required
@require_GET
def packages(request: HttpRequest, index_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    query = request.GET.get("q", "").strip()[:100]
    context = {
        "index": index,
        "query": query,
        "projects": _projects(index, query),
        "can_publish": index.can_publish(request.user),
        "is_admin": is_portal_admin(request.user),
        "refresh_pending": services.refresh_is_pending(index),
        "waiting": index.package_files.served().filter(state=PackageFile.State.STORED).exists(),
        "problems": index.package_files.present().exclude(problem=PackageFile.Problem.NONE),
        "unrecorded": index.unrecorded_files.all(),
        "immutability_rule": services.IMMUTABILITY_RULE,
        "max_upload_bytes": settings.PACKAGES_MAX_UPLOAD_BYTES,
    }
    template = "packages_ui/packages.html#listing" if request.htmx else "packages_ui/packages.html"
    return render(request, template, context)


def _store(request: HttpRequest, index: PrivateIndex, received) -> dict:
    try:
        package = services.package_store(index=index, received=received, actor=request.user, request=request)
    except DistributionError as exc:
        return {"filename": received.filename, "ok": False, "message": exc.message}
    return {"filename": package.filename, "ok": True, "package": package}


@csrf_exempt  # the upload handler must be set before CSRF reads the body; checked below instead
@login_required
@require_POST
def package_upload(request: HttpRequest, index_id: int) -> HttpResponse:
    handler = HashingUploadHandler(request)
    request.upload_handlers = [handler]
    return _package_upload(request, index_id, handler)


@csrf_protect
def _package_upload(request: HttpRequest, index_id: int, handler: HashingUploadHandler) -> HttpResponse:
    """Raw body (the upload script, one file per request, `?filename=`) or multipart (the form)."""
    index = _publishable_index(request, index_id)
    results = []
    if request.content_type == "multipart/form-data":
        for uploaded in request.FILES.getlist("files"):
            with received_from_form(uploaded) as received:
                results.append(_store(request, index, received))
        # Files over the limit were dropped while the form was parsed (HashingUploadHandler).
        results += [{"filename": name, "ok": False, "message": too_large_error().message} for name in handler.too_large]
        if not results:
            results.append({"filename": "", "ok": False, "message": "Choose at least one file to upload."})
    else:
        filename = request.GET.get("filename", "")
        try:
            with receive_raw_body(request, filename) as received:
                results.append(_store(request, index, received))
        except DistributionError as exc:
            results.append({"filename": filename, "ok": False, "message": exc.message})
    if not request.htmx:
        for result in results:
            level = messages.success if result["ok"] else messages.error
            text = "stored" if result["ok"] else result["message"]
            level(request, f"{result['filename']}: {text}" if result["filename"] else text)
        return redirect(_page_url(index))
    status = 201 if all(r["ok"] for r in results) else 400
    return render(request, "packages_ui/packages.html#results", {"index": index, "results": results}, status=status)


@login_required
@require_GET
def package_state(request: HttpRequest, index_id: int, file_id: int) -> HttpResponse:
    """One uploaded file's result, polled by htmx until it is live."""
    index = visible_index_or_404(request, index_id)
    package = get_object_or_404(index.package_files, pk=file_id)
    result = {"filename": package.filename, "ok": True, "package": package}
    return render(request, "packages_ui/packages.html#result", {"index": index, "result": result})


def _admin_index(request: HttpRequest, index_id: int) -> PrivateIndex:
    index = visible_index_or_404(request, index_id)
    if not is_portal_admin(request.user):
        raise PermissionDenied("Only a portal admin can do this: published files are immutable.")
    return index


@login_required
@require_POST
def package_delete(request: HttpRequest, index_id: int, file_id: int) -> HttpResponse:
    index = _admin_index(request, index_id)
    package = get_object_or_404(index.package_files.present(), pk=file_id)
    done = f"Deleted {package.filename}. The index no longer serves it; its name cannot be used again."
    perform_index_action(request, index, services.package_delete, done, package=package)
    return redirect(_page_url(index))


@login_required
@require_POST
def unrecorded_remove(request: HttpRequest, index_id: int, unrecorded_id: int) -> HttpResponse:
    index = _admin_index(request, index_id)
    unrecorded = get_object_or_404(index.unrecorded_files, pk=unrecorded_id)
    done = f"Removed {unrecorded.path} from the share."
    perform_index_action(request, index, services.unrecorded_remove, done, unrecorded=unrecorded)
    return redirect(_page_url(index))


@login_required
@require_POST
def packages_refresh(request: HttpRequest, index_id: int) -> HttpResponse:
    index = _publishable_index(request, index_id)
    perform_index_action(request, index, services.packages_refresh, "The index is being refreshed.")
    return redirect(_page_url(index))


@login_required
@require_POST
def packages_resync(request: HttpRequest, index_id: int) -> HttpResponse:
    index = _admin_index(request, index_id)
    report: dict[str, int] = {}

    def resync(**kwargs) -> None:
        report.update(services.packages_resync(**kwargs).summary())

    def summary() -> str:
        return "Share checked: " + ", ".join(f"{n} {k}" for k, n in report.items()) + "."

    # Lazy: the success message is only formatted once the resync has run, so it gives the counts.
    perform_index_action(request, index, resync, lazy(summary, str)())
    return redirect(_page_url(index))


@login_required
def mirror(request: HttpRequest, index_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    form = MirrorForm(request.POST or None)
    if request.method == "POST":
        _require_publisher(request, index)
        if form.is_valid():
            try:
                run = services.mirror_request(index=index, actor=request.user, request=request, **form.cleaned_data)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                return redirect("packages_mirror_run", index.pk, run.pk)
    runs = index.mirror_runs.all()[:10]
    return render(request, "packages_ui/mirror.html", {"index": index, "form": form, "runs": runs})


@login_required
@require_GET
def mirror_run(request: HttpRequest, index_id: int, run_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    run = get_object_or_404(MirrorRun, index=index, pk=run_id)
    template = "packages_ui/mirror_run.html#progress" if request.htmx else "packages_ui/mirror_run.html"
    return render(request, template, {"index": index, "run": run})


def _tokens_context(request: HttpRequest, index: PrivateIndex, form: CredentialForm | None = None) -> dict:
    return {
        "index": index,
        "credentials": index.credentials.select_related("created_by"),
        "credential_form": form or CredentialForm(),
        "can_publish": index.can_publish(request.user),
        "can_manage": index.can_manage(request.user),
    }


@login_required
def tokens(request: HttpRequest, index_id: int) -> HttpResponse:
    """Named read and publish tokens; a new token's password is in this response only."""
    index = visible_index_or_404(request, index_id)
    if request.method != "POST":
        return render(request, "packages_ui/tokens.html", _tokens_context(request, index))
    form = CredentialForm(request.POST)
    context = _tokens_context(request, index, form)
    if form.is_valid():
        kind = form.cleaned_data["kind"]
        if kind == IndexCredential.Kind.PUBLISH and not index.can_publish(request.user):
            raise PermissionDenied("Only publishers and team leads can create publish tokens.")
        try:
            credential, password = provisioning_services.credential_create(
                index=index, kind=kind, label=form.cleaned_data["label"], actor=request.user, request=request
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            context.update(
                new_credential=credential,
                password=password,
                snippets=client_snippets(
                    index_url=index.url, upload_url=index.upload_url, index_name=index.name,
                    username=credential.username, password=password,
                    ca_pem=provisioning_services.index_ca_pem(index), publish=kind == IndexCredential.Kind.PUBLISH,
                ),
            )  # fmt: skip
    template = "packages_ui/tokens.html#created" if request.htmx else "packages_ui/tokens.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"  # the password must not stay in any cache
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, index_id: int, credential_id: int) -> HttpResponse:
    index = visible_index_or_404(request, index_id)
    credential = get_object_or_404(index.credentials, pk=credential_id)
    if not (index.can_publish(request.user) or credential.created_by_id == request.user.pk):
        raise PermissionDenied("Only publishers, team leads and the token's creator can revoke it.")
    provisioning_services.credential_revoke(credential=credential, actor=request.user, request=request)
    messages.success(request, f"Revoked {credential.username}. It stops working at once.")
    return redirect("packages_tokens", index.pk)


# Exempt: authenticated by a publish token in HTTP Basic on each request, never by the session
# cookie, so there is no ambient credential for a cross-site request to ride on.
@csrf_exempt
def legacy_upload(request: HttpRequest, index_id: int) -> HttpResponse:
    """The PyPI legacy upload API (twine, uv publish, poetry publish, pdm publish)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"], content="This is an upload URL for twine and similar tools: POST only.")
    return upload_api.legacy_upload_respond(request, index_id)


@login_required
@require_POST
def package_yank(request: HttpRequest, index_id: int) -> HttpResponse:
    """Yank or un-yank a release (`project` + `version`) or one file (`file`), with a reason."""
    index = _publishable_index(request, index_id)
    undo = request.POST.get("undo") == "1"
    target: dict[str, str] = {"project": request.POST.get("project", "")}
    if file_id := request.POST.get("file", ""):
        package = get_object_or_404(index.package_files.present(), pk=int(file_id) if file_id.isdigit() else 0)
        target = {"project": package.project, "filename": package.filename}
    else:
        target["version"] = request.POST.get("version", "")
    what = target.get("filename") or f"{target['project']} {target.get('version')}"
    done = f"{'Un-yanked' if undo else 'Yanked'} {what}. pip and uv see it with the next refresh."
    reason = request.POST.get("reason", "")
    perform_index_action(request, index, services.package_yank, done, reason=reason, undo=undo, **target)
    return redirect(_page_url(index))
