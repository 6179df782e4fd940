"""The MSAL auth-code flow (state, nonce, PKCE) kept in the server-side session.

Production and the local provider share this code path; they differ only in ENTRA_AUTHORITY
and ENTRA_CA_BUNDLE.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import msal
import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.urls import reverse
from msal.exceptions import MsalServiceError

from portal.auth import tokens
from portal.auth.sync import GroupsOverage, user_sync_from_claims
from portal.redirects import safe_next

# MSAL nudges towards response_mode=form_post, but a cross-site POST callback arrives without
# the SameSite=Lax session cookie that holds the flow. The default `query` mode carries only
# the one-time code (PKCE-bound), never a token.
warnings.filterwarnings("ignore", message=r"response_mode='form_post' is recommended")

FLOW_SESSION_KEY = "entra_auth_flow"
NEXT_SESSION_KEY = "entra_next"


class SignInError(Exception):
    """Sign-in did not succeed. `reason` is a short code for the audit log; the message is
    safe to show."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details


def _client_credential() -> str | dict[str, str]:
    if settings.ENTRA_CLIENT_CERTIFICATE_PFX:
        return {
            "private_key_pfx_path": settings.ENTRA_CLIENT_CERTIFICATE_PFX,
            "passphrase": settings.ENTRA_CLIENT_CERTIFICATE_PASSPHRASE,
        }
    return settings.ENTRA_CLIENT_SECRET


@contextmanager
def msal_app() -> Iterator[msal.ConfidentialClientApplication]:
    """A fresh app per request: its in-memory token cache must never hold other users' tokens.

    Its HTTP session (TLS trust and timeout from tokens.http_session) is closed on leaving the
    block; discovery answers are shared between apps through tokens.msal_http_cache."""
    with tokens.http_session() as session:
        try:
            app = msal.ConfidentialClientApplication(
                settings.ENTRA_CLIENT_ID,
                client_credential=_client_credential(),
                authority=settings.ENTRA_AUTHORITY,
                # Same URL shape for Entra and the local provider; no call to Microsoft's
                # instance discovery, so a local authority works offline.
                instance_discovery=False,
                http_client=session,
                http_cache=tokens.msal_http_cache,
            )
        # Discovery: ValueError (4xx, not JSON), MsalServiceError (5xx), RuntimeError (MSAL's
        # fallback), requests' errors (connection, TLS, timeout).
        except (ValueError, RuntimeError, MsalServiceError, requests.RequestException) as exc:
            raise SignInError("provider_unavailable", "The sign-in service could not be reached.") from exc
        yield app


def sign_in_start(request: HttpRequest, *, next_url: str | None) -> str:
    """Store a new flow in the session and return the provider's authorization URL."""
    with msal_app() as app:
        flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=settings.ENTRA_REDIRECT_URI)
    request.session[FLOW_SESSION_KEY] = flow
    request.session[NEXT_SESSION_KEY] = safe_next(request, next_url)
    return flow["auth_uri"]


def sign_in_complete(request: HttpRequest) -> tuple[AbstractBaseUser, str, str]:
    """Redeem the callback's code, validate the id_token and sync the user.

    Returns (user, where to go next, the id_token for sign-out's id_token_hint). The flow is
    popped first, so a callback works once."""
    flow = request.session.pop(FLOW_SESSION_KEY, None)
    next_url = request.session.pop(NEXT_SESSION_KEY, None) or reverse(settings.LOGIN_REDIRECT_URL)
    if not flow:
        raise SignInError("no_flow", "This sign-in was not started here or was already used.")
    if "error" in request.GET:
        raise SignInError(
            "provider_error",
            "The sign-in service refused the sign-in.",
            error=request.GET.get("error", "")[:100],
            description=request.GET.get("error_description", "")[:300],
        )
    if not request.GET.get("state"):
        raise SignInError("missing_state", "The sign-in answer carries no state.")
    try:
        with msal_app() as app:
            result = app.acquire_token_by_auth_code_flow(flow, request.GET.dict())
    except ValueError as exc:  # MSAL: state mismatch
        raise SignInError("state_mismatch", "The sign-in answer does not belong to this sign-in.") from exc
    except RuntimeError as exc:  # MSAL: nonce mismatch
        raise SignInError("nonce", "The sign-in answer does not belong to this sign-in.") from exc
    except requests.RequestException as exc:
        raise SignInError("provider_unavailable", "The sign-in service could not be reached.") from exc
    if "error" in result:
        raise SignInError(
            "token_error",
            "The sign-in service refused to complete the sign-in.",
            error=str(result.get("error"))[:100],
            description=str(result.get("error_description", ""))[:300],
        )
    expected_nonce = hashlib.sha256(flow["nonce"].encode("ascii")).hexdigest()  # MSAL sends the hash
    try:
        claims = tokens.validate_id_token(result.get("id_token", ""), nonce=expected_nonce)
    except tokens.IdTokenError as exc:
        raise SignInError(f"id_token_{exc.reason}", str(exc)) from exc
    except tokens.ProviderUnavailable as exc:
        raise SignInError("provider_unavailable", "The sign-in service could not be reached.") from exc
    try:
        user = user_sync_from_claims(claims)
    except GroupsOverage as exc:
        raise SignInError(
            "groups_overage",
            "Your account is in too many groups for the portal to read your teams. "
            "Ask an administrator to assign only the portal's groups to the application.",
            oid=claims.get("oid"),
        ) from exc
    return user, next_url, result["id_token"]


def end_session_url(*, id_token_hint: str | None) -> str | None:
    """The provider's end-session URL (signing out of Entra too), or None if unknown.

    client_id and id_token_hint let any OpenID provider check post_logout_redirect_uri and send
    the user back (RP-Initiated Logout 1.0); Entra accepts them too."""
    try:
        endpoint = tokens.provider_metadata().get("end_session_endpoint")
    except tokens.ProviderUnavailable:
        return None
    if not endpoint:
        return None
    params = {
        "client_id": settings.ENTRA_CLIENT_ID,
        "post_logout_redirect_uri": settings.ENTRA_POST_LOGOUT_REDIRECT_URI,
    }
    if id_token_hint:
        params["id_token_hint"] = id_token_hint
    query = urlencode(params)
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
