"""A small Entra-shaped OpenID Connect provider over HTTPS, for the laptop run and tests.

URL shapes follow Microsoft Entra ID v2.0 so the portal's MSAL code path is the production one:

    /<tenant>/v2.0/.well-known/openid-configuration   discovery
    /<tenant>/discovery/v2.0/keys                      JWKS
    /<tenant>/oauth2/v2.0/authorize                    a page to pick a demo user
    /<tenant>/oauth2/v2.0/token                        auth-code grant, PKCE (S256) required
    /<tenant>/oauth2/v2.0/logout                       end session

Codes are one-time and short-lived; id_tokens are RS256-signed with a key generated at start
and carry Entra's claims (oid, tid, roles, groups, preferred_username, name, nonce).
It is never part of the portal: it runs only when `make run` or a test starts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devtools.entra_provider.demo import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TENANT_ID,
    DEMO_USERS,
    DemoUser,
)

CODE_LIFETIME_SECONDS = 300
TOKEN_LIFETIME_SECONDS = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Tamper:
    """A one-shot change to the next id_token, for tests of the portal's validation.

    `claims` overrides claims (a value of None removes the claim); `alg="none"` sends an
    unsigned token; `foreign_key` signs with a key that is not in the JWKS (same kid)."""

    claims: dict[str, Any] = field(default_factory=dict)
    alg: str = "RS256"
    foreign_key: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    user: DemoUser
    nonce: str | None
    code_challenge: str
    scope: str
    expires_at: float


class EntraProvider:
    """The provider: `start()` serves in a daemon thread, `stop()` shuts it down."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | str,
        tenant_id: str = DEMO_TENANT_ID,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        redirect_uris: list[str] | None = None,
        users: tuple[DemoUser, ...] = DEMO_USERS,
        test_hooks: bool = False,
    ) -> None:
        self.host = host
        self.state_dir = Path(state_dir)
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris or [])
        self.users: dict[str, DemoUser] = {u.key: u for u in users}
        self.test_hooks = test_hooks
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._tamper: Tamper | None = None
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _b64url(hashlib.sha256(str(uuid.uuid4()).encode()).digest()[:15])

        self.ca = trustme.CA(organization_name="Portal local Entra provider")
        self.server_cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = self.state_dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))

        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.provider = self  # type: ignore[attr-defined]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_cert.configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # --- addresses
    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        """What the portal's ENTRA_AUTHORITY is set to: the same shape as Entra's."""
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/v2.0"

    def endpoint(self, name: str) -> str:
        paths = {
            "authorize": "oauth2/v2.0/authorize",
            "token": "oauth2/v2.0/token",
            "logout": "oauth2/v2.0/logout",
            "keys": "discovery/v2.0/keys",
        }
        return f"{self.authority}/{paths[name]}"

    def leaf_spki_sha256(self) -> str:
        """Base64 SHA-256 of the server certificate's public key, for Chromium's
        --ignore-certificate-errors-spki-list (trusting exactly this certificate)."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.server_cert.cert_chain_pems[0].bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")

    # --- life
    def start(self) -> EntraProvider:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="entra-provider", daemon=True)
        self._thread.start()
        self.write_state()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def write_state(self) -> Path:
        info = {
            "authority": self.authority,
            "issuer": self.issuer,
            "ca_path": str(self.ca_path),
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "port": self.port,
        }
        path = self.state_dir / "provider.json"
        path.write_text(json.dumps(info, indent=2))
        return path

    # --- test hooks
    def tamper_next(self, **kwargs: Any) -> None:
        """Make the next id_token issued by the token endpoint a tampered one (see Tamper)."""
        with self._lock:
            self._tamper = Tamper(**kwargs)

    def reset(self, users: tuple[DemoUser, ...] = DEMO_USERS) -> None:
        """Back to the given users, no pending tamper, no outstanding codes."""
        with self._lock:
            self.users = {u.key: u for u in users}
            self._tamper = None
            self._codes.clear()

    def set_user(self, user: DemoUser) -> None:
        with self._lock:
            self.users[user.key] = user

    # --- documents
    def discovery(self) -> dict[str, Any]:
        return {
            "token_endpoint": self.endpoint("token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": self.endpoint("keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": self.endpoint("authorize"),
            "end_session_endpoint": self.endpoint("logout"),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "name",
                "nonce",
                "oid",
                "preferred_username",
                "tid",
                "ver",
                "roles",
                "groups",
            ],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "localhost",
        }

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.signing_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256", "issuer": self.issuer})
        return {"keys": [jwk]}

    def id_token_claims(self, user: DemoUser, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": self.client_id,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "name": user.name,
            "oid": user.oid,
            "preferred_username": user.preferred_username,
            "sub": _b64url(hashlib.sha256(f"{user.oid}:{self.client_id}".encode()).digest()),
            "tid": self.tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "2.0",
            **user.extra_claims,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if user.roles:
            claims["roles"] = list(user.roles)
        if user.groups:
            claims["groups"] = list(user.groups)
        return claims

    def mint_id_token(self, user: DemoUser, nonce: str | None) -> str:
        claims = self.id_token_claims(user, nonce)
        with self._lock:
            tamper, self._tamper = self._tamper, None
        if tamper is None:
            return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})
        for name, value in tamper.claims.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if tamper.alg == "none":
            header = _b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": self.kid}).encode())
            return f"{header}.{_b64url(json.dumps(claims).encode())}."
        if tamper.alg == "HS256":
            # Key confusion: HMAC keyed with the published public key (PyJWT refuses to build it).
            secret = self.signing_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
            signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
            signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{_b64url(signature)}"
        key = self.signing_key
        if tamper.foreign_key:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, key, algorithm=tamper.alg, headers={"kid": self.kid})

    # --- the flow
    def check_authorize(self, params: dict[str, str]) -> str | None:
        """Returns why an authorization request is refused (shown, never redirected), or None."""
        if params.get("client_id") != self.client_id:
            return "Unknown client_id."
        if params.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri is not registered for this client."
        if params.get("response_type") != "code":
            return "Only response_type=code is supported."
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return "PKCE with code_challenge_method=S256 is required."
        return None

    def issue_code(self, params: dict[str, str], user: DemoUser) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                user=user,
                nonce=params.get("nonce"),
                code_challenge=params["code_challenge"],
                scope=params.get("scope", ""),
                expires_at=time.time() + CODE_LIFETIME_SECONDS,
            )
        return code

    def redeem(self, form: dict[str, str], basic_auth: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint: (HTTP status, JSON body)."""
        client_id, client_secret = basic_auth or (form.get("client_id"), form.get("client_secret"))
        if client_id != self.client_id or not secrets.compare_digest(
            (client_secret or "").encode(), self.client_secret.encode()
        ):
            return 401, _error("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("grant_type") != "authorization_code":
            return 400, _error("unsupported_grant_type", "Only authorization_code is supported.")
        with self._lock:
            # One-time: the code is gone whether or not the rest of the request is valid.
            grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires_at < time.time():
            return 400, _error("invalid_grant", "AADSTS54005: The code was already redeemed or is unknown.")
        if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            return 400, _error("invalid_grant", "AADSTS50148: redirect_uri does not match.")
        verifier = form.get("code_verifier", "")
        expected = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        if not verifier or not secrets.compare_digest(expected, grant.code_challenge):
            return 400, _error("invalid_grant", "AADSTS501481: The code_verifier does not match.")
        user = grant.user
        client_info = _b64url(json.dumps({"uid": user.oid, "utid": self.tenant_id}).encode())
        return 200, {
            "token_type": "Bearer",
            "scope": grant.scope or "openid profile offline_access",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            # The portal asks for no API scopes: the access token is opaque and never used.
            "access_token": secrets.token_urlsafe(32),
            "refresh_token": secrets.token_urlsafe(32),
            "id_token": self.mint_id_token(user, grant.nonce),
            "client_info": client_info,
        }

    def rotate_key(self) -> None:
        """Replace the signing key and its kid at once, as a provider does in an abrupt rollover."""
        with self._lock:
            self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.kid = _b64url(hashlib.sha256(str(uuid.uuid4()).encode()).digest()[:15])

    def logout_target(self, query: dict[str, str]) -> str | None:
        """Where end_session may send the browser: only back to a registered client's origin, and
        only when the request names the client (client_id or an id_token_hint issued to it), as
        OpenID Connect RP-Initiated Logout requires."""
        post_logout_redirect_uri = query.get("post_logout_redirect_uri", "")
        if not self._logout_names_client(query):
            return None
        target = urlsplit(post_logout_redirect_uri)
        for uri in self.redirect_uris:
            registered = urlsplit(uri)
            if (target.scheme, target.netloc) == (registered.scheme, registered.netloc):
                return post_logout_redirect_uri
        return None

    def _logout_names_client(self, query: dict[str, str]) -> bool:
        if query.get("client_id", self.client_id) != self.client_id:
            return False
        hint = query.get("id_token_hint")
        if hint:
            try:
                # Expired hints are fine for logout; the signature must be ours.
                jwt.decode(
                    hint, self.signing_key.public_key(), algorithms=["RS256"], audience=self.client_id,
                    options={"verify_exp": False},
                )  # fmt: skip
            except jwt.InvalidTokenError:
                return False
            return True
        return "client_id" in query


def _error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description, "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ")}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; color: #1b1b1b; }}
.banner {{ background: #fff4ce; padding: .5rem 1rem; border-radius: 4px; }}
form {{ margin: .75rem 0; }} button {{ font-size: 1rem; padding: .5rem 1rem; cursor: pointer; }}
.hint {{ color: #555; font-size: .9rem; margin-left: .5rem; }}
</style></head>
<body><p class="banner">Local development sign-in provider: not Microsoft Entra ID.</p>
<h1>{title}</h1>{body}</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalEntraProvider/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def provider(self) -> EntraProvider:
        return self.server.provider  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: request lines would carry codes

    # --- helpers
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _page(self, status: int, title: str, body: str) -> None:
        page = _PAGE.format(title=html.escape(title), body=body)
        self._send(status, page.encode(), "text/html; charset=utf-8")

    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _route(self) -> tuple[str, dict[str, str]]:
        split = urlsplit(self.path)
        prefix = f"/{self.provider.tenant_id}/"
        if not split.path.startswith(prefix):
            return "", {}
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        return split.path[len(prefix) :], query

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    # --- methods
    def do_GET(self) -> None:
        path, query = self._route()
        if path == "v2.0/.well-known/openid-configuration":
            self._json(200, self.provider.discovery())
        elif path == "discovery/v2.0/keys":
            self._json(200, self.provider.jwks())
        elif path == "oauth2/v2.0/authorize":
            self._authorize_page(query)
        elif path == "oauth2/v2.0/logout":
            target = self.provider.logout_target(query)
            if target:
                self._redirect(target)
            else:
                self._page(200, "You have signed out", "<p>You can close this window.</p>")
        else:
            self._json(404, _error("not_found", "No such endpoint."))

    def do_POST(self) -> None:
        path, _ = self._route()
        if path == "oauth2/v2.0/authorize":
            self._authorize_choice(self._form())
        elif path == "oauth2/v2.0/token":
            status, body = self.provider.redeem(self._form(), self._basic_auth())
            self._json(status, body)
        elif path == "_test/tamper" and self.provider.test_hooks:
            length = int(self.headers.get("Content-Length") or 0)
            self.provider.tamper_next(**json.loads(self.rfile.read(length) or b"{}"))
            self._json(200, {"ok": True})
        else:
            self._json(404, _error("not_found", "No such endpoint."))

    def _basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return client_id, secret

    def _authorize_page(self, params: dict[str, str]) -> None:
        refusal = self.provider.check_authorize(params)
        if refusal:
            self._page(400, "Sign-in request refused", f"<p>{html.escape(refusal)}</p>")
            return
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        choices = "".join(
            f'<form method="post">{hidden}<button name="user" value="{html.escape(u.key)}" '
            f'data-user="{html.escape(u.key)}">{html.escape(u.name)}</button>'
            f'<span class="hint">{html.escape(u.preferred_username)} — {html.escape(u.description)}</span></form>'
            for u in self.provider.users.values()
        )
        cancel = f'<form method="post">{hidden}<button name="user" value="">Cancel</button></form>'
        self._page(200, "Pick a demo user", choices + cancel)

    def _authorize_choice(self, form: dict[str, str]) -> None:
        refusal = self.provider.check_authorize(form)
        if refusal:
            self._page(400, "Sign-in request refused", f"<p>{html.escape(refusal)}</p>")
            return
        user = self.provider.users.get(form.get("user", ""))
        if user is None:
            answer = {"error": "access_denied", "error_description": "AADSTS65004: The user declined to sign in."}
        else:
            answer = {"code": self.provider.issue_code(form, user), "session_state": str(uuid.uuid4())}
        if "state" in form:
            answer["state"] = form["state"]
        sep = "&" if "?" in form["redirect_uri"] else "?"
        self._redirect(f"{form['redirect_uri']}{sep}{urlencode(answer)}")
