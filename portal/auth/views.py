"""Sign-in, callback, sign-out. Thin: the flow lives in portal.auth.flow."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from portal.audit import audit_record
from portal.auth import flow
from portal.redirects import safe_next

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
# The id_token of this session's sign-in, sent back as id_token_hint when signing out.
ID_TOKEN_SESSION_KEY = "entra_id_token"


@never_cache
@require_GET
def login_page(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, request.GET.get("next"))
    if request.user.is_authenticated:
        return redirect(next_url)
    return render(request, "portal/auth/login.html", {"next": next_url})


@never_cache
@require_POST
def sign_in(request: HttpRequest) -> HttpResponse:
    try:
        return HttpResponseRedirect(flow.sign_in_start(request, next_url=request.POST.get("next")))
    except flow.SignInError as exc:
        return _failed(request, exc)


@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    try:
        user, next_url, id_token = flow.sign_in_complete(request)
    except flow.SignInError as exc:
        return _failed(request, exc)
    login(request, user, backend=MODEL_BACKEND)  # rotates the session key
    request.session[ID_TOKEN_SESSION_KEY] = id_token
    audit_record(action="auth.signed_in", actor=user, obj=user, request=request)
    return redirect(next_url)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit_record(action="auth.signed_out", obj=request.user, request=request)
    id_token = request.session.get(ID_TOKEN_SESSION_KEY)
    logout(request)
    return redirect(flow.end_session_url(id_token_hint=id_token) or "signed_out")


@never_cache
@require_GET
def signed_out(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/auth/signed_out.html")


def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """Replaces the Django admin's password form: staff sign in with Microsoft like everyone."""
    if request.user.is_authenticated:
        raise PermissionDenied  # signed in but not staff; sending them to sign in would loop
    return redirect_to_login(request.GET.get("next", ""), settings.LOGIN_URL)


def _failed(request: HttpRequest, error: flow.SignInError) -> HttpResponse:
    logout(request)  # no session survives a failed sign-in
    audit_record(
        action="auth.sign_in_failed",
        request=request,
        details={"reason": error.reason, "message": str(error), **error.details},
    )
    return render(request, "portal/auth/failed.html", {"message": str(error)}, status=400)
