"""`next` only ever leads to the portal's own paths."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from portal.redirects import safe_next
from tests.entra_support import sign_in

OFFSITE = [
    "https://evil.example/",
    "http://evil.example/indexes/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/\\/evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "\x01/evil.example",
    "/\tevil",
    " //evil.example",
    "evil.example",
    "http://testserver.evil.example/",
]


@pytest.mark.parametrize("target", OFFSITE)
def test_offsite_next_is_replaced_by_the_home_page(target):
    request = RequestFactory().get("/")

    assert safe_next(request, target) == "/"


@pytest.mark.parametrize("target", ["/", "/indexes/new/", "/indexes/3/?tab=credentials", "/audit/?action=x"])
def test_portal_paths_are_kept(target):
    assert safe_next(RequestFactory().get("/"), target) == target


@pytest.mark.django_db
@pytest.mark.e2e
@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example/"])
def test_sign_in_with_offsite_next_lands_on_the_home_page(client, entra, target):
    response = sign_in(client, entra, "member", next_url=target).response

    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.django_db
@pytest.mark.e2e
def test_sign_in_returns_to_the_page_that_asked_for_it(client, entra):
    response = sign_in(client, entra, "member", next_url="/indexes/new/").response

    assert response["Location"] == "/indexes/new/"


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/"])
def test_signed_in_visitor_on_the_login_page_is_not_sent_offsite(client, member, target):
    client.force_login(member)

    response = client.get("/auth/login/", {"next": target})

    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.django_db
def test_login_page_does_not_echo_an_offsite_next(client):
    response = client.get("/auth/login/", {"next": "https://evil.example/"})

    assert b"evil.example" not in response.content
