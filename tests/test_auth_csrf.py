"""CSRF is enforced on every POST of the portal, htmx requests included."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from portal.permissions import ADMIN_GROUP
from tests.test_permissions_matrix import (  # noqa: F401
    POST_DATA,
    ROUTES,
    TOKEN_API_NAMES,
    snapshot,
    url_for,
    world,
)

pytestmark = pytest.mark.django_db


def csrf_client(user: User | None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def admin_user(db) -> User:
    user = User.objects.create_user("csrf-admin")
    user.groups.add(Group.objects.get_or_create(name=ADMIN_GROUP)[0])
    return user


@pytest.mark.parametrize("route", ROUTES, ids=[r.route for r in ROUTES])
def test_post_without_a_csrf_token_is_refused(world, admin_user, route):  # noqa: F811
    url = url_for(route, world)
    before = snapshot(world)

    # A token API is CSRF-exempt because the session does not authenticate it: with only the
    # admin's session cookie, as a forged cross-site POST would have, it answers 401.
    refused = 401 if route.name in TOKEN_API_NAMES else 403
    client = csrf_client(admin_user)
    plain = client.post(url, POST_DATA)
    htmx = client.post(url, POST_DATA, headers={"HX-Request": "true"})
    assert plain.status_code == refused, f"POST {url} without a token → {plain.status_code}"
    assert htmx.status_code == refused, f"htmx POST {url} without a token → {htmx.status_code}"
    anonymous = csrf_client(None).post(url, POST_DATA)
    # A view that checks CSRF itself (after setting upload handlers) may send anonymous
    # visitors to sign in first; either way nothing happens.
    assert anonymous.status_code == refused or anonymous["Location"].startswith("/auth/login/")
    assert snapshot(world) == before


def test_post_with_a_forged_csrf_token_is_refused(admin_user):
    client = csrf_client(admin_user)
    client.get("/auth/login/")

    response = client.post("/auth/logout/", headers={"X-CSRFToken": "A" * 64})

    assert response.status_code == 403
    assert client.session.get("_auth_user_id") == str(admin_user.pk)


def test_sign_out_with_the_token_from_the_page_works(admin_user):
    client = csrf_client(admin_user)
    client.get("/")
    token = client.cookies["csrftoken"].value

    response = client.post("/auth/logout/", headers={"X-CSRFToken": token})

    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_sign_in_button_posts_with_the_token_from_the_login_page(settings):
    settings.ENTRA_AUTHORITY = "https://127.0.0.1:9/nobody"  # nothing answers: the failure page
    client = csrf_client(None)
    page = client.get("/auth/login/")
    token = page.context["csrf_token"]

    response = client.post("/auth/sign-in/", {"csrfmiddlewaretoken": str(token)})

    assert response.status_code == 400  # past CSRF, refused by the unreachable provider
    assert b"Sign-in failed" in response.content
