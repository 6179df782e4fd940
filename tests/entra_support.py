"""Fixtures for sign-in tests: the local Entra-shaped provider over HTTPS (in this process, in a
thread) with the portal configured to use it, and a helper that walks the real MSAL flow."""

from __future__ import annotations

import socket
import threading
import time
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


def configure_portal(settings, provider: EntraProvider, base_url: str) -> None:
    """Point the portal served at `base_url` at `provider`, with no cached metadata or keys."""
    settings.ENTRA_TENANT_ID = provider.tenant_id
    settings.ENTRA_CLIENT_ID = provider.client_id
    settings.ENTRA_CLIENT_SECRET = provider.client_secret
    settings.ENTRA_CLIENT_CERTIFICATE_PFX = ""
    settings.ENTRA_AUTHORITY = provider.authority
    settings.ENTRA_CA_BUNDLE = str(provider.ca_path)
    settings.ENTRA_REDIRECT_URI = f"{base_url}/auth/callback"
    settings.ENTRA_POST_LOGOUT_REDIRECT_URI = f"{base_url}/auth/signed-out/"
    tokens.clear_caches()


@pytest.fixture
def entra(entra_provider: EntraProvider, settings) -> Iterator[EntraProvider]:
    """The provider, with the portal's settings pointing at it and fresh demo users."""
    configure_portal(settings, entra_provider, "http://testserver")
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


# How long silent_server holds a connection: a client without a timeout waits this long.
SILENT_HOLD_SECONDS = 15


@pytest.fixture
def silent_server() -> Iterator[str]:
    """The base URL of a server that accepts connections and never answers (not even the TLS
    handshake). Connections are dropped after SILENT_HOLD_SECONDS, so a client that has no
    timeout fails the test instead of hanging it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()

    def hold() -> None:
        held: list[socket.socket] = []
        deadline = time.monotonic() + SILENT_HOLD_SECONDS
        while not done.is_set() and time.monotonic() < deadline:
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                pass
        for conn in held:
            conn.close()

    thread = threading.Thread(target=hold, name="silent-server", daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    thread.join(timeout=5)
    listener.close()
