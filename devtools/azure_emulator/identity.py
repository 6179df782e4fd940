"""An Entra-shaped token endpoint, so the real azure-identity code path (EnvironmentCredential /
ClientSecretCredential via MSAL, with AZURE_AUTHORITY_HOST pointing here and instance discovery
disabled) obtains the bearer tokens the ARM side accepts."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qsl

from .http import Request, Response, json_response
from .state import EmulatorState, Token

TOKEN_LIFETIME = 3600


class IdentityService:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def handle(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        tenant = parts[0]
        authority = f"{request.base_url}/{tenant}"
        if request.path.endswith("/.well-known/openid-configuration"):
            return json_response(
                200,
                {
                    "issuer": f"{authority}/v2.0",
                    "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{authority}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{authority}/oauth2/v2.0/devicecode",
                    "end_session_endpoint": f"{authority}/oauth2/v2.0/logout",
                    "jwks_uri": f"{authority}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "tenant_region_scope": "EU",
                },
            )
        if request.path.endswith("/oauth2/v2.0/token") and request.method == "POST":
            form = dict(parse_qsl(request.body.decode()))
            client_id = form.get("client_id", "")
            with self.state.lock:
                expected = self.state.clients.get(client_id)
            if form.get("grant_type") != "client_credentials":
                return json_response(
                    400,
                    {"error": "unsupported_grant_type", "error_description": "AADSTS70003: grant type not supported."},
                )
            if expected is None:
                return json_response(
                    400,
                    {
                        "error": "unauthorized_client",
                        "error_description": f"AADSTS700016: Application with identifier '{client_id}' was not found "
                        "in the directory.",
                    },
                )
            if form.get("client_secret") != expected:
                return json_response(
                    401,
                    {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                )
            token = secrets.token_urlsafe(32)
            with self.state.lock:
                self.state.tokens[token] = Token(client_id, time.time() + TOKEN_LIFETIME)
            return json_response(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": TOKEN_LIFETIME,
                    "ext_expires_in": TOKEN_LIFETIME,
                    "access_token": token,
                },
            )
        return json_response(404, {"error": "not_found", "error_description": "AADSTS90002: unknown endpoint."})
