"""The provider's metadata and keys, and the portal's own validation of the id_token.

MSAL (1.38+) checks nothing in the id_token but the nonce, so every claim the portal relies on
is checked here: RS256 signature against the JWKS from discovery, iss, aud, exp/iat, nbf when
present (OpenID Connect does not require it; Entra sends it) and tid.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import jwt
import requests
from django.conf import settings

ALLOWED_ALGORITHMS = ["RS256"]
METADATA_TTL_SECONDS = 3600
# A token signed with an unknown kid triggers a JWKS refresh (a provider rotated its key), at most
# this often: prompt after an abrupt rotation, yet a flood of made-up kids costs one fetch per floor.
JWKS_REFRESH_MIN_SECONDS = 5


class IdTokenError(Exception):
    """The id_token is not acceptable. `reason` is a short code for the audit log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderUnavailable(Exception):
    pass


# MSAL's cache of non-token HTTP answers (discovery, throttled errors): shared by the per-request
# MSAL apps so that discovery is not downloaded on every sign-in. MSAL documents that it holds
# no tokens and no personal data. Cleared by clear_caches().
msal_http_cache: dict[str, Any] = {}


def http_session() -> requests.Session:
    """A session that verifies TLS against ENTRA_CA_BUNDLE (or the system CAs) and nothing else,
    and gives up on every request after ENTRA_HTTP_TIMEOUT_SECONDS.

    trust_env is off: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE and proxy variables would silently
    override `verify` and change whom the portal trusts for sign-in. The timeout is on the
    session because MSAL ignores its own `timeout=` when given an `http_client=`."""
    session = requests.Session()
    session.trust_env = False
    session.verify = settings.ENTRA_CA_BUNDLE or True
    session.request = functools.partial(session.request, timeout=settings.ENTRA_HTTP_TIMEOUT_SECONDS)
    return session


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, ttl: float) -> Any | None:
        with self.lock:
            entry = self.entries.get(key)
        if entry and time.monotonic() - entry[0] < ttl:
            return entry[1]
        return None

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self.entries[key] = (time.monotonic(), value)

    def age(self, key: str) -> float:
        with self.lock:
            entry = self.entries.get(key)
        return time.monotonic() - entry[0] if entry else float("inf")

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


_cache = _Cache()


def _get_json(url: str) -> dict[str, Any]:
    try:
        with http_session() as session:
            response = session.get(url)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc.__class__.__name__}") from exc


def provider_metadata() -> dict[str, Any]:
    """The OpenID configuration of ENTRA_AUTHORITY (the same document MSAL reads)."""
    url = f"{settings.ENTRA_AUTHORITY}/v2.0/.well-known/openid-configuration"
    metadata = _cache.get(url, METADATA_TTL_SECONDS)
    if metadata is None:
        metadata = _get_json(url)
        if "issuer" not in metadata or "jwks_uri" not in metadata:
            raise ProviderUnavailable(f"{url}: no issuer or jwks_uri")
        _cache.put(url, metadata)
    return metadata


def _signing_key(kid: str) -> jwt.PyJWK:
    jwks_uri = provider_metadata()["jwks_uri"]
    jwks = _cache.get(jwks_uri, METADATA_TTL_SECONDS)
    if jwks is None or (kid not in jwks and _cache.age(jwks_uri) > JWKS_REFRESH_MIN_SECONDS):
        try:
            key_set = jwt.PyJWKSet.from_dict(_get_json(jwks_uri))
        except jwt.PyJWKSetError as exc:
            raise ProviderUnavailable(f"{jwks_uri}: no usable keys") from exc
        jwks = {key.key_id: key for key in key_set.keys if key.key_id}
        _cache.put(jwks_uri, jwks)
    if kid not in jwks:
        raise IdTokenError("unknown_key", "The id_token is signed with a key the provider does not publish.")
    return jwks[kid]


def validate_id_token(id_token: str, *, nonce: str) -> dict[str, Any]:
    """The claims of `id_token` once every check passes; IdTokenError otherwise."""
    if not id_token:
        raise IdTokenError("no_id_token", "The provider returned no id_token.")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.InvalidTokenError as exc:
        raise IdTokenError("malformed", "The id_token is malformed.") from exc
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise IdTokenError("algorithm", f"The id_token uses algorithm {header.get('alg')!r}, not RS256.")

    metadata = provider_metadata()
    # Entra's multi-tenant metadata has a "{tenantid}" placeholder; we only accept our tenant.
    issuer = metadata["issuer"].replace("{tenantid}", settings.ENTRA_TENANT_ID)
    key = _signing_key(header.get("kid", ""))
    try:
        claims = jwt.decode(
            id_token,
            key=key,
            algorithms=ALLOWED_ALGORITHMS,
            audience=settings.ENTRA_CLIENT_ID,
            issuer=issuer,
            leeway=settings.ENTRA_CLOCK_SKEW_SECONDS,
            # nbf is checked by PyJWT whenever it is present, but not required.
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": True},
        )
    except jwt.InvalidSignatureError as exc:
        raise IdTokenError("signature", "The id_token signature is invalid.") from exc
    except jwt.InvalidAudienceError as exc:
        raise IdTokenError("audience", "The id_token is meant for another application.") from exc
    except jwt.InvalidIssuerError as exc:
        raise IdTokenError("issuer", "The id_token comes from another issuer.") from exc
    except jwt.ExpiredSignatureError as exc:
        raise IdTokenError("expired", "The id_token has expired.") from exc
    except jwt.ImmatureSignatureError as exc:
        raise IdTokenError("not_yet_valid", "The id_token is not valid yet.") from exc
    except jwt.InvalidTokenError as exc:
        raise IdTokenError("invalid", f"The id_token is invalid: {exc}") from exc

    if claims["iat"] > time.time() + settings.ENTRA_CLOCK_SKEW_SECONDS:
        raise IdTokenError("not_yet_valid", "The id_token was issued in the future.")
    if claims.get("tid") != settings.ENTRA_TENANT_ID:
        raise IdTokenError("tenant", "The id_token belongs to another tenant.")
    if claims.get("nonce") != nonce:
        raise IdTokenError("nonce", "The id_token does not answer this sign-in (nonce).")
    if not claims.get("oid"):
        raise IdTokenError("no_oid", "The id_token carries no object id (oid).")
    return claims


def clear_caches() -> None:
    """Forget metadata and keys (tests switch providers)."""
    _cache.clear()
    msal_http_cache.clear()
