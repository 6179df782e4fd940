"""The guard rail against a non-Microsoft authority in production, and production headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal.auth.checks import entra_authority_check

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-like-secret-key-for-this-test-only",
    "ENTRA_TENANT_ID": "7d6f3c1e-0d4b-4c9a-9f5e-000000000001",
    "ENTRA_CLIENT_ID": "3f0c9a52-6a3e-4b8f-8c1d-000000000002",
    "ENTRA_CLIENT_SECRET": "not-a-real-secret",
    "ALLOWED_HOSTS": "portal.example.com,testserver",
    "DATABASE_URL": "sqlite:///:memory:",
}


def run_django(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ENTRA_")}
    environment.update({**PRODUCTION, **env, "DJANGO_SETTINGS_MODULE": "portal.settings"})
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ids(settings) -> set[str]:
    return {message.id for message in entra_authority_check(None)}


def test_microsoft_authority_passes_with_debug_off(settings):
    settings.DEBUG = False
    settings.ENTRA_TENANT_ID = PRODUCTION["ENTRA_TENANT_ID"]
    settings.ENTRA_CLIENT_ID = PRODUCTION["ENTRA_CLIENT_ID"]
    settings.ENTRA_CLIENT_SECRET = "x"
    settings.ENTRA_AUTHORITY = f"https://login.microsoftonline.com/{settings.ENTRA_TENANT_ID}"
    settings.ENTRA_CA_BUNDLE = ""

    assert ids(settings) == set()


@pytest.mark.parametrize(
    "authority",
    [
        "https://127.0.0.1:8443/tenant",
        "https://login.microsoftonline.com.evil.example/tenant",
        "http://login.microsoftonline.com/tenant",
        "https://login.microsoftonline.com:8443/tenant",
        "https://evil.example/login.microsoftonline.com",
    ],
)
def test_non_microsoft_authority_is_refused_with_debug_off(settings, authority):
    settings.DEBUG = False
    settings.ENTRA_AUTHORITY = authority

    assert "portal_auth.E001" in ids(settings)


def test_ca_override_is_refused_with_debug_off(settings):
    settings.DEBUG = False
    settings.ENTRA_AUTHORITY = "https://login.microsoftonline.com/t"
    settings.ENTRA_CA_BUNDLE = "/tmp/ca.pem"

    assert "portal_auth.E002" in ids(settings)


def test_local_provider_is_fine_with_debug_on(settings):
    settings.DEBUG = True
    settings.ENTRA_AUTHORITY = "https://127.0.0.1:8443/tenant"
    settings.ENTRA_CA_BUNDLE = "/tmp/ca.pem"

    assert ids(settings) == set()


@pytest.mark.e2e
def test_portal_refuses_to_start_with_debug_off_and_a_local_authority():
    result = run_django("print('started')", ENTRA_AUTHORITY="https://127.0.0.1:8443/tenant")

    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "portal_auth.E001" in result.stderr


@pytest.mark.e2e
def test_portal_refuses_to_start_with_debug_off_and_a_ca_override():
    result = run_django("print('started')", ENTRA_CA_BUNDLE="/tmp/ca.pem")

    assert result.returncode != 0
    assert "portal_auth.E002" in result.stderr


@pytest.mark.e2e
def test_production_settings_send_secure_cookies_hsts_and_csp():
    code = """
import json
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
response = Client().get("/auth/login/", secure=True, headers={"host": "portal.example.com"})
cookie = response.cookies["csrftoken"]
print(json.dumps({
    "status": response.status_code,
    "hsts": response.get("Strict-Transport-Security", ""),
    "csp": response.get("Content-Security-Policy", ""),
    "xfo": response.get("X-Frame-Options", ""),
    "nosniff": response.get("X-Content-Type-Options", ""),
    "csrf_cookie_secure": bool(cookie["secure"]),
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE,
    "session_cookie_httponly": settings.SESSION_COOKIE_HTTPONLY,
    "session_cookie_samesite": settings.SESSION_COOKIE_SAMESITE,
}))
"""
    result = run_django(code)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["status"] == 200
    assert "max-age=31536000" in seen["hsts"] and "includeSubDomains" in seen["hsts"]
    assert "script-src 'self'" in seen["csp"] and "frame-ancestors 'none'" in seen["csp"]
    assert seen["xfo"] == "DENY"
    assert seen["nosniff"] == "nosniff"
    assert seen["csrf_cookie_secure"] is True
    assert seen["session_cookie_secure"] is True
    assert seen["session_cookie_httponly"] is True
    assert seen["session_cookie_samesite"] == "Lax"
