"""Package page end to end on a real index (local driver: pypiserver + Caddy over HTTPS):
upload → one restart → served check → live → pip install with a read token; twine with read
and publish tokens; revocation without a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from packages_ui.models import PackageFile
from packages_ui.testing import build_wheel
from portal.models import AuditEvent
from provisioning.drivers.base import get_driver
from provisioning.services import index_spec

pytestmark = pytest.mark.e2e


def child_env() -> dict[str, str]:
    """The environment for pip and twine children: no CA bundle or pip setting from this
    machine may override the --cert we pass (REQUESTS_CA_BUNDLE silently would)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIP_") and k not in {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"}
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    return env


@pytest.fixture
def ca_file(ready_index, tmp_path: Path) -> Path:
    path = tmp_path / "index-ca.pem"
    path.write_text(get_driver().ca_certificate_pem(index_spec(ready_index)))
    return path


def create_token(client, index, kind: str, label: str) -> tuple[str, str]:
    """Create a token through the tokens page; the password is in that one response."""
    page = client.post(f"/indexes/{index.pk}/packages/tokens/", {"label": label, "kind": kind}).content.decode()
    username = re.search(r'id="cred-user">([^<]+)<', page).group(1)
    password = re.search(r'id="cred-password">([^<]+)<', page).group(1)
    return username, password


def upload(client, index, path: Path):
    return client.generic(
        "POST", f"/indexes/{index.pk}/packages/upload/?filename={quote(path.name)}", data=path.read_bytes(),
        content_type="application/octet-stream", HTTP_HX_REQUEST="true",
    )  # fmt: skip


def twine_upload(index, username: str, password: str, ca_file: Path, wheel: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--repository-url", f"{index_spec(index).base_url}/",
         "-u", username, "-p", password, "--cert", str(ca_file), "--non-interactive", "--disable-progress-bar",
         str(wheel)],
        env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_uploads_go_live_after_one_restart_and_pip_installs_the_wheel_over_https_with_a_read_token(
    ready_index, publisher_client, tmp_path, ca_file, run_jobs, django_capture_on_commit_callbacks
) -> None:
    wheels = [build_wheel(tmp_path, "e2e-demo", version) for version in ("1.0", "1.1")]
    started = time.monotonic()
    for wheel in wheels:
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(publisher_client, ready_index, wheel).status_code == 201

    assert run_jobs("packages") == 1
    upload_to_live = time.monotonic() - started

    assert set(PackageFile.objects.values_list("state", flat=True)) == {"live"}
    assert AuditEvent.objects.filter(action="packages.restarted").count() == 1
    assert upload_to_live < 10
    username, password = create_token(publisher_client, ready_index, "read", "laptop")
    target = tmp_path / "fresh-venv"
    venv.create(target, with_pip=False)
    port = ready_index.deployment["https_port"]
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
         "--index-url", f"https://{username}:{password}@localhost:{port}/simple/", "--cert", str(ca_file),
         "e2e-demo==1.1"],
        env=child_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    version = subprocess.run(
        [str(target / "bin" / "python"), "-c", "import e2e_demo; print(e2e_demo.VERSION)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert version.stdout.strip() == "1.1"


def test_read_token_is_refused_for_upload_and_publish_token_is_accepted_by_twine(
    ready_index, publisher_client, tmp_path, ca_file
) -> None:
    read_user, read_password = create_token(publisher_client, ready_index, "read", "ci-read")
    publish_user, publish_password = create_token(publisher_client, ready_index, "publish", "ci-publish")
    wheel = build_wheel(tmp_path, "twine-demo", "0.1")

    refused = twine_upload(ready_index, read_user, read_password, ca_file, wheel)
    accepted = twine_upload(ready_index, publish_user, publish_password, ca_file, wheel)

    assert refused.returncode != 0
    assert re.search(r"40[13]", refused.stdout + refused.stderr)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    # twine wrote to the share behind the portal's back: resync brings the records up to date.
    publisher_client.post(f"/indexes/{ready_index.pk}/packages/resync/")
    assert PackageFile.objects.get().filename == wheel.name


def test_member_cannot_create_a_publish_token(ready_index, member_client) -> None:
    response = member_client.post(f"/indexes/{ready_index.pk}/packages/tokens/", {"label": "x", "kind": "publish"})

    assert response.status_code == 403
    assert not ready_index.credentials.exists()


def test_revoked_token_stops_working_without_a_restart(ready_index, publisher_client, ca_file) -> None:
    username, password = create_token(publisher_client, ready_index, "read", "temporary")
    url = f"{index_spec(ready_index).base_url}/simple/"
    pids_before = sorted(p.read_text() for p in Path(get_driver()._dir(index_spec(ready_index))).glob("run/*.pid"))
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the index CA
        session.verify = str(ca_file)
        assert session.get(url, auth=(username, password), timeout=10).status_code == 200
        credential = ready_index.credentials.get(username=username)

        publisher_client.post(f"/indexes/{ready_index.pk}/packages/tokens/{credential.pk}/revoke/")

        deadline = time.monotonic() + 5
        status = 200
        while time.monotonic() < deadline and status == 200:
            status = session.get(url, auth=(username, password), timeout=10).status_code
            time.sleep(0.1)
    assert status in {401, 403}
    pids_after = sorted(p.read_text() for p in Path(get_driver()._dir(index_spec(ready_index))).glob("run/*.pid"))
    assert pids_after == pids_before
