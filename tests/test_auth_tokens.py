"""Every tampered or misdirected sign-in answer is refused: failure page, no session, audited."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from portal.models import AuditEvent
from tests.entra_support import follow_callback, pick_user, provider_session, sign_in, signed_in_user_id, start_sign_in

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

NOW = int(time.time())
FOREIGN_TENANT = "99999999-8888-7777-6666-555555555555"

TAMPERED_TOKENS = {
    "wrong audience": ({"claims": {"aud": "00000000-0000-0000-0000-00000000beef"}}, "id_token_audience"),
    "wrong issuer": (
        {"claims": {"iss": f"https://login.microsoftonline.com/{FOREIGN_TENANT}/v2.0"}},
        "id_token_issuer",
    ),
    "expired": ({"claims": {"iat": NOW - 7200, "nbf": NOW - 7200, "exp": NOW - 3600}}, "id_token_expired"),
    "not yet valid": ({"claims": {"nbf": NOW + 3600}}, "id_token_not_yet_valid"),
    "issued in the future": ({"claims": {"iat": NOW + 3600}}, "id_token_not_yet_valid"),
    "bad signature": ({"foreign_key": True}, "id_token_signature"),
    "alg none": ({"alg": "none"}, "id_token_algorithm"),
    "HS256 with the public key": ({"alg": "HS256"}, "id_token_algorithm"),
    "foreign tenant": ({"claims": {"tid": FOREIGN_TENANT}}, "id_token_tenant"),
    "wrong nonce": ({"claims": {"nonce": "0" * 64}}, "nonce"),
    "no nonce": ({"claims": {"nonce": None}}, "nonce"),
    "no oid": ({"claims": {"oid": None}}, "id_token_no_oid"),
    "no expiry": ({"claims": {"exp": None}}, "id_token_invalid"),
}


def assert_refused(client, response, reason: str) -> None:
    assert response.status_code == 400
    assert b"Sign-in failed" in response.content
    assert signed_in_user_id(client) is None
    event = AuditEvent.objects.filter(action="auth.sign_in_failed").latest("id")
    assert event.details["reason"] == reason
    assert event.source_ip == "127.0.0.1"


@pytest.mark.parametrize("case", TAMPERED_TOKENS, ids=list(TAMPERED_TOKENS))
def test_tampered_id_token_is_refused(client, entra, case):
    tamper, reason = TAMPERED_TOKENS[case]
    auth_uri = start_sign_in(client)
    callback = pick_user(entra, auth_uri, "lead")
    entra.tamper_next(**tamper)

    response = follow_callback(client, callback)

    assert_refused(client, response, reason)


def test_untampered_control_case_signs_in(client, entra):
    response = sign_in(client, entra, "lead").response

    assert response.status_code == 302
    assert signed_in_user_id(client)


def test_replayed_callback_is_refused(client, entra):
    result = sign_in(client, entra, "lead")
    assert signed_in_user_id(client)

    response = follow_callback(client, result.callback_url)

    assert_refused(client, response, "no_flow")


def test_provider_redeems_a_code_only_once(client, entra):
    auth_uri = start_sign_in(client)
    flow = client.session["entra_auth_flow"]
    code = parse_qs(urlsplit(pick_user(entra, auth_uri, "lead")).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow["redirect_uri"],
        "client_id": entra.client_id,
        "client_secret": entra.client_secret,
        "code_verifier": flow["code_verifier"],
    }
    with provider_session(entra) as session:
        first = session.post(entra.endpoint("token"), data=form)
        second = session.post(entra.endpoint("token"), data=form)

    assert first.status_code == 200 and "id_token" in first.json()
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"


def test_code_redeemed_before_the_portal_is_refused(client, entra):
    auth_uri = start_sign_in(client)
    flow = client.session["entra_auth_flow"]
    callback = pick_user(entra, auth_uri, "lead")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    with provider_session(entra) as session:  # an attacker who intercepted the code uses it first
        session.post(
            entra.endpoint("token"),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": flow["redirect_uri"],
                "client_id": entra.client_id,
                "client_secret": entra.client_secret,
                "code_verifier": flow["code_verifier"],
            },
        )

    assert_refused(client, follow_callback(client, callback), "token_error")


def test_provider_refuses_a_code_without_the_pkce_verifier(client, entra):
    auth_uri = start_sign_in(client)
    flow = client.session["entra_auth_flow"]
    code = parse_qs(urlsplit(pick_user(entra, auth_uri, "lead")).query)["code"][0]
    with provider_session(entra) as session:
        answer = session.post(
            entra.endpoint("token"),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": flow["redirect_uri"],
                "client_id": entra.client_id,
                "client_secret": entra.client_secret,
                "code_verifier": "not-the-verifier",
            },
        )
    assert answer.status_code == 400 and "code_verifier" in answer.json()["error_description"]


def test_callback_without_state_is_refused(client, entra):
    callback = pick_user(entra, start_sign_in(client), "lead")
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items() if k != "state"}

    response = client.get(f"/auth/callback?{urlencode(query)}")

    assert_refused(client, response, "missing_state")


def test_callback_with_another_state_is_refused(client, entra):
    callback = pick_user(entra, start_sign_in(client), "lead")
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    query["state"] = "forged-state"

    response = client.get(f"/auth/callback?{urlencode(query)}")

    assert_refused(client, response, "state_mismatch")


def test_callback_without_a_started_sign_in_is_refused(client, entra):
    # Login CSRF: an attacker's own code delivered to a victim's browser has no flow to match.
    attacker = type(client)()
    callback = pick_user(entra, start_sign_in(attacker), "lead")

    assert_refused(client, follow_callback(client, callback), "no_flow")


def test_user_who_cancels_at_the_provider_sees_the_failure_page(client, entra):
    callback = pick_user(entra, start_sign_in(client), "")

    assert_refused(client, follow_callback(client, callback), "provider_error")


def test_failed_sign_in_ends_an_existing_session(client, entra, lead):
    client.force_login(lead)
    callback = pick_user(entra, start_sign_in(client), "lead")
    entra.tamper_next(claims={"aud": "someone-else"})

    assert_refused(client, follow_callback(client, callback), "id_token_audience")


def test_wrong_client_secret_is_refused(client, entra, settings):
    callback = pick_user(entra, start_sign_in(client), "lead")
    settings.ENTRA_CLIENT_SECRET = "not-the-secret"

    assert_refused(client, follow_callback(client, callback), "token_error")


def test_unreachable_provider_shows_the_failure_page(client, entra, settings):
    settings.ENTRA_AUTHORITY = "https://127.0.0.1:9/nobody"

    assert_refused(client, client.post("/auth/sign-in/"), "provider_unavailable")


def test_untrusted_provider_certificate_is_refused(client, entra, settings):
    # Without the CA bundle the provider's certificate is not trusted, whatever the
    # machine's REQUESTS_CA_BUNDLE says (trust_env is off).
    settings.ENTRA_CA_BUNDLE = ""

    assert_refused(client, client.post("/auth/sign-in/"), "provider_unavailable")


def test_groups_overage_is_refused_rather_than_guessed(client, entra):
    callback = pick_user(entra, start_sign_in(client), "lead")
    entra.tamper_next(
        claims={"groups": None, "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "x"}}}
    )

    assert_refused(client, follow_callback(client, callback), "groups_overage")


def test_portal_checks_the_nonce_itself_not_only_through_msal(entra):
    from portal.auth import tokens

    token = entra.mint_id_token(entra.users["lead"], nonce="the-nonce-of-another-sign-in")

    with pytest.raises(tokens.IdTokenError) as refused:
        tokens.validate_id_token(token, nonce="this-sign-in")
    assert refused.value.reason == "nonce"


def test_token_signed_with_an_unpublished_key_id_is_refused(entra):
    import jwt

    from portal.auth import tokens

    claims = entra.id_token_claims(entra.users["lead"], nonce="n")
    token = jwt.encode(claims, entra.signing_key, algorithm="RS256", headers={"kid": "rotated-away"})

    with pytest.raises(tokens.IdTokenError) as refused:
        tokens.validate_id_token(token, nonce="n")
    assert refused.value.reason == "unknown_key"


def test_provider_going_away_before_the_code_is_redeemed_shows_the_failure_page(client, entra, settings):
    callback = pick_user(entra, start_sign_in(client), "lead")
    # The token endpoint comes from discovery, which MSAL fetches again: point it at nothing.
    settings.ENTRA_AUTHORITY = "https://127.0.0.1:9/nobody"

    assert_refused(client, follow_callback(client, callback), "provider_unavailable")


@pytest.mark.parametrize("step", ["start", "callback"])
def test_provider_that_never_answers_fails_the_sign_in_within_the_timeout(client, entra, settings, silent_server, step):
    # MSAL ignores its own timeout= when given a session: the session carries the timeout.
    settings.ENTRA_HTTP_TIMEOUT_SECONDS = 1
    callback = pick_user(entra, start_sign_in(client), "lead") if step == "callback" else None
    settings.ENTRA_AUTHORITY = f"{silent_server}/{entra.tenant_id}"

    started = time.monotonic()
    response = client.post("/auth/sign-in/") if step == "start" else follow_callback(client, callback)

    assert time.monotonic() - started < 5
    assert_refused(client, response, "provider_unavailable")


def test_token_requests_give_up_after_the_timeout(settings, silent_server):
    from portal.auth import tokens

    settings.ENTRA_HTTP_TIMEOUT_SECONDS = 1
    started = time.monotonic()
    with tokens.http_session() as session, pytest.raises(requests.Timeout):
        session.post(f"{silent_server}/token", data={"code": "x"})  # what MSAL's token request does
    assert time.monotonic() - started < 5


def test_provider_discovery_failing_with_a_server_error_shows_the_failure_page(client, entra, settings):
    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Unavailable)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    entra.server_cert.configure_cert(context)  # trusted through ENTRA_CA_BUNDLE
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.ENTRA_AUTHORITY = f"https://127.0.0.1:{server.server_address[1]}/{entra.tenant_id}"

        assert_refused(client, client.post("/auth/sign-in/"), "provider_unavailable")
    finally:
        server.shutdown()
        server.server_close()


def test_discovery_is_downloaded_once_not_on_every_sign_in(client, entra, monkeypatch):
    downloads = []
    discovery = entra.discovery
    monkeypatch.setattr(entra, "discovery", lambda: downloads.append(1) or discovery())
    assert sign_in(client, entra, "lead").response.status_code == 302
    assert downloads  # MSAL's and the portal's own first reads
    downloads.clear()

    client.logout()
    assert sign_in(client, entra, "member").response.status_code == 302

    assert downloads == []


def test_id_token_without_nbf_is_accepted_because_openid_connect_does_not_require_it(client, entra):
    callback = pick_user(entra, start_sign_in(client), "lead")
    entra.tamper_next(claims={"nbf": None})

    response = follow_callback(client, callback)

    assert response.status_code == 302
    assert signed_in_user_id(client)


def test_sign_in_works_again_within_seconds_after_the_provider_rotates_its_key(client, entra, monkeypatch):
    from portal.auth import tokens

    monkeypatch.setattr(tokens, "JWKS_REFRESH_MIN_SECONDS", 0.5)
    assert sign_in(client, entra, "lead").response.status_code == 302
    client.logout()
    entra.rotate_key()
    time.sleep(0.6)

    response = sign_in(client, entra, "lead").response

    assert response.status_code == 302
    assert signed_in_user_id(client)


def test_a_flood_of_unknown_key_ids_fetches_the_keys_once_per_floor(entra, monkeypatch):
    import jwt

    from portal.auth import tokens

    downloads = []
    jwks = entra.jwks
    monkeypatch.setattr(entra, "jwks", lambda: downloads.append(1) or jwks())
    claims = entra.id_token_claims(entra.users["lead"], nonce="n")
    for attempt in range(20):
        token = jwt.encode(claims, entra.signing_key, algorithm="RS256", headers={"kid": f"made-up-{attempt}"})
        with pytest.raises(tokens.IdTokenError):
            tokens.validate_id_token(token, nonce="n")

    assert len(downloads) == 1
    assert tokens.JWKS_REFRESH_MIN_SECONDS <= 10
