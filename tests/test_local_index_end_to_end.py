"""The foundation's promise, end to end: request in the browser, a worker builds it, then the real
twine uploads with the publish token to the portal's upload URL, the file goes live, and the real
pip installs it with the read token over HTTPS."""

from __future__ import annotations

import base64
import re
import ssl
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

import pytest
from django.urls import reverse

from provisioning.models import IndexCredential, PrivateIndex
from tests.builders import build_wheel
from tests.clients import fresh_venv, pip_install, run, twine_upload

pytestmark = pytest.mark.e2e


def _create_token(client, index, kind, label):
    response = client.post(reverse("packages_tokens", args=[index.pk]), {"kind": kind, "label": label})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    username = re.search(r'<code id="cred-user">([^<]+)</code>', page).group(1)
    password = re.search(r'<code id="cred-password">([^<]+)</code>', page).group(1)
    return username, password, page


def _get(url: str, ca: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_request_provision_upload_with_twine_and_install_with_pip_over_https(
    lead_client, team, run_jobs, django_capture_on_commit_callbacks, tmp_path, live_server, settings
):
    settings.PORTAL_BASE_URL = live_server.url
    with django_capture_on_commit_callbacks(execute=True):
        lead_client.post(reverse("index_new"), {"name": "e2e-index", "team": team.pk, "size": "small"})
    run_jobs()
    index = PrivateIndex.objects.get(name="e2e-index")
    assert index.state == "ready", index.error

    ca = tmp_path / "ca.pem"
    ca.write_bytes(lead_client.get(reverse("index_ca_certificate", args=[index.pk])).content)
    publish_user, publish_password, publish_page = _create_token(lead_client, index, "publish", "CI")
    read_user, read_password, read_page = _create_token(lead_client, index, "read", "laptop")
    # Snippets are ready to paste: pip.conf, pip.ini (Windows path), uv, twine.
    assert r"C:\ProgramData\pip\pip.ini" in read_page and "[[tool.uv.index]]" in read_page
    assert "[distutils]" in publish_page and "[distutils]" not in read_page
    # Nothing in the database holds a password in plain text.
    for credential in IndexCredential.objects.filter(index=index):
        assert credential.password_hash.startswith("hmac-sha256$")
    assert publish_password not in str(list(IndexCredential.objects.values()))

    # Without credentials, or with a wrong password, the index refuses to list anything.
    assert _get(index.url, str(ca)) == 401
    assert _get(index.url, str(ca), (read_user, "wrong")) == 401
    assert _get(index.url, str(ca), (read_user, read_password)) == 200

    wheel = build_wheel(tmp_path, "e2e-demo", "0.1.0")
    # Publishing goes to the portal (validated, recorded, audited), never to the index itself.
    assert index.upload_url.startswith(live_server.url)
    refused = twine_upload([wheel], repository_url=index.upload_url, username=read_user, password=read_password)
    assert refused.returncode != 0  # a read token cannot publish
    uploaded = twine_upload([wheel], repository_url=index.upload_url, username=publish_user, password=publish_password)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    run_jobs("packages")  # the refresh: the index serves the new manifest, checked as served
    assert index.package_files.get().state == "live"

    python = fresh_venv(tmp_path / "venv")
    parts = urlsplit(index.url)
    authed = parts._replace(netloc=f"{quote(read_user)}:{quote(read_password)}@{parts.netloc}").geturl()
    installed = pip_install(python, "e2e-demo==0.1.0", index_url=authed, ca=ca)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert run([str(python), "-c", "import e2e_demo; print(e2e_demo.VERSION)"]).stdout.strip() == "0.1.0"

    # pip without credentials is refused rather than silently falling back to PyPI.
    anonymous = run([str(python), "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "dl"),
                     "--index-url", index.url, "--cert", str(ca), "e2e-demo==0.1.0"])  # fmt: skip
    assert anonymous.returncode != 0
    assert "401" in anonymous.stdout + anonymous.stderr
