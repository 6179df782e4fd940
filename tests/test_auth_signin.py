"""Sign-in through the real MSAL code against the local Entra-shaped provider over HTTPS."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.contrib.auth.models import User

from portal.models import AuditEvent, EntraIdentity
from portal.permissions import is_portal_admin
from provisioning.models import Membership, Team
from tests.entra_support import sign_in, signed_in_user_id

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture
def demo_teams(db) -> list[Team]:
    from devtools.entra_provider import DEMO_TEAMS

    return [Team.objects.create(name=n, slug=s, entra_group_id=g) for n, s, g in DEMO_TEAMS]


def test_lead_signs_in_through_msal_and_lands_on_the_home_page(client, entra, demo_teams):
    result = sign_in(client, entra, "lead")

    assert result.response.status_code == 302
    assert result.response["Location"] == "/"
    user = User.objects.get(pk=signed_in_user_id(client))
    assert user.username == "lee.lead@contoso.example"
    assert user.get_full_name() == "Lee Lead"
    assert not user.has_usable_password()
    identity = EntraIdentity.objects.get(user=user)
    assert (identity.tid, identity.oid) == (entra.tenant_id, entra.users["lead"].oid)
    assert Membership.objects.get(user=user).team == demo_teams[0]
    assert Membership.objects.get(user=user).role == "lead"
    assert client.get("/").status_code == 200


def test_authorization_request_uses_pkce_nonce_state_and_query_response_mode(client, entra):
    response = client.post("/auth/sign-in/")
    params = parse_qs(urlsplit(response["Location"]).query)

    assert response["Location"].startswith(entra.endpoint("authorize"))
    assert params["code_challenge_method"] == ["S256"]
    assert params["code_challenge"][0]
    assert params["nonce"][0] and params["state"][0]
    assert "response_mode" not in params or params["response_mode"] == ["query"]
    assert "openid" in params["scope"][0].split()
    flow = client.session["entra_auth_flow"]
    assert flow["state"] == params["state"][0]
    assert flow["nonce"] != params["nonce"][0]  # MSAL sends the nonce's hash


def test_sign_in_rotates_the_session_key(client, entra):
    client.get("/auth/login/")
    client.post("/auth/sign-in/")
    before = client.session.session_key
    from tests.entra_support import follow_callback, pick_user

    callback = pick_user(entra, client.session["entra_auth_flow"]["auth_uri"], "member")
    follow_callback(client, callback)

    assert signed_in_user_id(client)
    assert client.session.session_key != before


def test_second_sign_in_finds_the_same_user_by_tid_and_oid(client, entra, demo_teams):
    sign_in(client, entra, "member")
    first = signed_in_user_id(client)
    client.post("/auth/logout/")
    sign_in(client, entra, "member")

    assert signed_in_user_id(client) == first
    assert EntraIdentity.objects.count() == 1


def test_local_account_with_the_same_username_is_not_taken_over(client, entra):
    local = User.objects.create_user(username="max.member@contoso.example", password="x")
    sign_in(client, entra, "member")

    user = User.objects.get(pk=signed_in_user_id(client))
    assert user != local
    assert user.username.startswith("max.member@contoso.example#")


def test_sign_in_is_audited_with_source_ip(client, entra):
    sign_in(client, entra, "admin")

    event = AuditEvent.objects.get(action="auth.signed_in")
    assert event.actor_name == "ada.admin@contoso.example"
    assert event.source_ip == "127.0.0.1"


def test_admin_role_makes_a_portal_admin(client, entra):
    sign_in(client, entra, "admin")

    assert is_portal_admin(User.objects.get(pk=signed_in_user_id(client)))


def test_signing_out_is_post_only_and_ends_the_entra_session(client, entra):
    sign_in(client, entra, "member")

    assert client.get("/auth/logout/").status_code == 405
    assert signed_in_user_id(client)
    response = client.post("/auth/logout/")

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == entra.endpoint("logout")
    query = parse_qs(location.query)
    assert query["post_logout_redirect_uri"] == ["http://testserver/auth/signed-out/"]
    assert query["client_id"] == [entra.client_id]
    hint = jwt.decode(query["id_token_hint"][0], options={"verify_signature": False})
    assert hint["oid"] == entra.users["member"].oid
    assert signed_in_user_id(client) is None
    assert AuditEvent.objects.filter(action="auth.signed_out").exists()


def test_provider_end_session_sends_the_browser_back_only_to_the_portal_that_names_itself(entra):
    from tests.entra_support import provider_session

    def logout(**params):
        return session.get(entra.endpoint("logout"), params=params, allow_redirects=False)

    hint = entra.mint_id_token(entra.users["member"], nonce=None)
    back_to = "http://testserver/auth/signed-out/"
    with provider_session(entra) as session:
        with_client_id = logout(post_logout_redirect_uri=back_to, client_id=entra.client_id)
        with_hint = logout(post_logout_redirect_uri=back_to, id_token_hint=hint)
        anonymous = logout(post_logout_redirect_uri=back_to)
        elsewhere = logout(post_logout_redirect_uri="https://evil.example/", client_id=entra.client_id)
    assert with_client_id.status_code == with_hint.status_code == 302
    assert with_client_id.headers["Location"] == with_hint.headers["Location"] == back_to
    assert anonymous.status_code == elsewhere.status_code == 200


def test_login_page_offers_sign_in_with_microsoft(client, entra):
    response = client.get("/auth/login/?next=/indexes/new/")

    assert response.status_code == 200
    assert b"Sign in with Microsoft" in response.content
    assert b'value="/indexes/new/"' in response.content


def test_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/auth/login/?next=/")


def test_django_admin_password_form_is_replaced_by_sign_in_with_microsoft(client, db):
    User.objects.create_superuser("root", password="correct horse")

    page = client.get("/django-admin/login/?next=/django-admin/")
    attempt = client.post("/django-admin/login/", {"username": "root", "password": "correct horse"})

    assert page.status_code == 302
    assert page["Location"].startswith("/auth/login/?next=/django-admin/")
    assert signed_in_user_id(client) is None
    assert attempt.status_code == 302 and attempt["Location"].startswith("/auth/login/")


def test_portal_admin_signed_in_with_microsoft_reaches_the_django_admin(client, entra):
    sign_in(client, entra, "admin")

    assert client.get("/django-admin/").status_code == 200
