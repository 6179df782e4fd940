"""The local provider as `make run` starts it: a process, its CA written to the state dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def provider_process(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}}
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.entra_provider", "--port", "0", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    state = tmp_path / "provider.json"
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    yield process, json.loads(state.read_text())
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def session_trusting(ca_path: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_path
    return session


@pytest.mark.e2e
def test_provider_process_serves_entra_shaped_discovery_over_https(provider_process):
    _, state = provider_process

    with session_trusting(state["ca_path"]) as session:
        metadata = session.get(f"{state['authority']}/v2.0/.well-known/openid-configuration", timeout=10).json()
        keys = session.get(metadata["jwks_uri"], timeout=10).json()

    assert metadata["issuer"] == f"{state['authority']}/v2.0"
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert metadata["end_session_endpoint"].endswith("/oauth2/v2.0/logout")
    assert keys["keys"][0]["kty"] == "RSA" and keys["keys"][0]["kid"]
    assert "/v2.0" in metadata["token_endpoint"]


@pytest.mark.e2e
def test_provider_process_stops_on_sigterm(provider_process):
    process, _ = provider_process

    os.killpg(process.pid, signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    assert "ca: " in process.stdout.read()


@pytest.mark.e2e
def test_provider_is_not_trusted_without_its_ca(provider_process):
    _, state = provider_process

    with requests.Session() as session, pytest.raises(requests.exceptions.SSLError):
        session.trust_env = False
        session.get(f"{state['authority']}/v2.0/.well-known/openid-configuration", timeout=10)


@pytest.mark.e2e
def test_provider_refuses_unregistered_redirect_uris(provider_process):
    _, state = provider_process

    with session_trusting(state["ca_path"]) as session:
        answer = session.get(
            f"{state['authority']}/oauth2/v2.0/authorize",
            params={
                "client_id": state["client_id"],
                "response_type": "code",
                "redirect_uri": "https://evil.example/callback",
                "code_challenge": "x" * 43,
                "code_challenge_method": "S256",
            },
            allow_redirects=False,
            timeout=10,
        )
    assert answer.status_code == 400
    assert "redirect_uri" in answer.text


@pytest.mark.e2e
def test_provider_test_hook_is_off_unless_asked_for(provider_process):
    _, state = provider_process

    with session_trusting(state["ca_path"]) as session:
        answer = session.post(f"{state['authority']}/_test/tamper", json={"alg": "none"}, timeout=10)
    assert answer.status_code == 404
