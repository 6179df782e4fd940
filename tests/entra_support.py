"""Fixtures for sign-in tests: the local Entra-shaped provider over HTTPS (in this process, in a
thread) with the portal configured to use it, and a helper that walks the real MSAL flow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client

from devtools.entra_provider import DEMO_USERS, EntraProvider
from portal.auth import tokens


@pytest.fixture(scope="session")
def entra_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraProvider]:
    provider = EntraProvider(
        state_dir=tmp_path_factory.mktemp("entra"),
        redirect_uris=["http://testserver/auth/callback"],
        test_hooks=True,
    ).start()
    yield provider
    provider.stop()


@pytest.fixture
def entra(entra_provider: EntraProvider, settings) -> Iterator[EntraProvider]:
    """The provider, with the portal's settings pointing at it and fresh demo users."""
    settings.ENTRA_TENANT_ID = entra_provider.tenant_id
    settings.ENTRA_CLIENT_ID = entra_provider.client_id
    settings.ENTRA_CLIENT_SECRET = entra_provider.client_secret
    settings.ENTRA_CLIENT_CERTIFICATE_PFX = ""
    settings.ENTRA_AUTHORITY = entra_provider.authority
    settings.ENTRA_CA_BUNDLE = str(entra_provider.ca_path)
    settings.ENTRA_REDIRECT_URI = "http://testserver/auth/callback"
    settings.ENTRA_POST_LOGOUT_REDIRECT_URI = "http://testserver/auth/signed-out/"
    tokens.clear_caches()
    entra_provider.reset(DEMO_USERS)
    yield entra_provider
    entra_provider.reset(DEMO_USERS)
    tokens.clear_caches()


def provider_session(provider: EntraProvider) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(provider.ca_path)
    return session


@dataclass
class SignIn:
    """The steps of one browser-less sign-in: the provider's answer and the portal's response."""

    auth_uri: str
    callback_url: str
    response: object  # the portal's response to the callback (None if not followed)


def pick_user(provider: EntraProvider, auth_uri: str, user_key: str) -> str:
    """Do what the browser does on the provider's page: pick `user_key`; returns the callback URL."""
    params = {k: v[0] for k, v in parse_qs(urlsplit(auth_uri).query).items()}
    with provider_session(provider) as session:
        page = session.get(auth_uri, timeout=10)
        assert page.status_code == 200, page.text
        answer = session.post(provider.endpoint("authorize"), data={**params, "user": user_key}, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def start_sign_in(client: Client, next_url: str | None = None) -> str:
    data = {"next": next_url} if next_url is not None else {}
    response = client.post("/auth/sign-in/", data)
    assert response.status_code == 302, response.content
    return response["Location"]


def follow_callback(client: Client, callback_url: str):
    split = urlsplit(callback_url)
    return client.get(f"{split.path}?{split.query}")


def sign_in(client: Client, provider: EntraProvider, user_key: str, next_url: str | None = None) -> SignIn:
    auth_uri = start_sign_in(client, next_url)
    callback_url = pick_user(provider, auth_uri, user_key)
    return SignIn(auth_uri, callback_url, follow_callback(client, callback_url))


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def pytest_configure(config: pytest.Config) -> None:
    # portal.auth.flow filters this at import; pytest resets warning filters for each test.
    config.addinivalue_line("filterwarnings", "ignore:response_mode='form_post' is recommended:UserWarning")
