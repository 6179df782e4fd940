"""Package page end to end on a real index (local driver: the index server + Caddy over HTTPS):
upload → one refresh → served check → live → pip install with a read token, no process
restarted and no reader failing meanwhile; the index refusing writes; clean protocol (401,
https redirects); revocation without a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from packages_ui.models import PackageFile
from portal.models import AuditEvent
from provisioning.drivers.backend import get_runtime
from provisioning.services import index_spec
from tests.builders import build_wheel
from tests.driver_support import get_driver

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
    path.write_text(get_runtime().ca_certificate_pem(index_spec(ready_index)))
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


def index_pids(index) -> list[str]:
    return sorted(p.read_text() for p in Path(get_runtime()._dir(index_spec(index))).glob("run/*.pid"))


def index_session(ca_file: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the index CA
    session.verify = str(ca_file)
    return session


class Reader(threading.Thread):
    """A pip-like client polling one /simple/ page every 20 ms until stopped (at most 30 s)."""

    def __init__(self, url: str, auth: tuple[str, str], ca_file: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.auth, self.ca_file = url, auth, ca_file
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 30
        with index_session(self.ca_file) as session:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    self.statuses.append(session.get(self.url, auth=self.auth, timeout=5).status_code)
                except requests.RequestException as exc:
                    self.errors.append(str(exc))
                time.sleep(0.02)


def test_uploads_go_live_after_one_refresh_without_restarting_anything_and_pip_installs_them(
    ready_index, publisher_client, tmp_path, ca_file, run_jobs, django_capture_on_commit_callbacks
) -> None:
    wheels = [build_wheel(tmp_path, "e2e-demo", version) for version in ("1.0", "1.1")]
    pids_before = index_pids(ready_index)
    reader = Reader(f"{index_spec(ready_index).base_url}/simple/e2e-demo/", create_token(
        publisher_client, ready_index, "read", "poller"), ca_file)  # fmt: skip
    reader.start()
    time.sleep(0.3)
    started = time.monotonic()
    for wheel in wheels:
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(publisher_client, ready_index, wheel).status_code == 201

    assert run_jobs("packages") == 1
    upload_to_live = time.monotonic() - started
    time.sleep(0.3)
    reader.stop.set()
    reader.join()

    assert set(PackageFile.objects.values_list("state", flat=True)) == {"live"}
    assert AuditEvent.objects.filter(action="packages.refreshed").count() == 1
    assert upload_to_live < 10
    assert index_pids(ready_index) == pids_before  # nothing restarted
    assert reader.errors == [] and set(reader.statuses) <= {200, 404} and len(reader.statuses) > 20
    assert reader.statuses[-1] == 200
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


def test_the_index_itself_refuses_writes_and_names_the_portals_upload_url(
    ready_index, publisher_client, tmp_path, ca_file
) -> None:
    user, password = create_token(publisher_client, ready_index, "publish", "ci-publish")
    wheel = build_wheel(tmp_path, "twine-demo", "0.1")

    refused = twine_upload(ready_index, user, password, ca_file, wheel)
    with index_session(ca_file) as session:
        removal = session.post(
            f"{index_spec(ready_index).base_url}/", data={":action": "remove_pkg", "name": "x", "version": "1"},
            auth=(user, password), timeout=10,
        )  # fmt: skip

    assert refused.returncode != 0 and "405" in refused.stdout + refused.stderr
    assert removal.status_code == 405 and ready_index.upload_url in removal.text
    assert [f.path for f in get_driver().list_files(index_spec(ready_index), "pypipackages")] == []


def test_clients_get_401_with_a_challenge_and_redirects_that_stay_on_https(
    ready_index, publisher_client, tmp_path, ca_file, run_jobs, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        upload(publisher_client, ready_index, build_wheel(tmp_path, "Some_Name", "1.0"))
    run_jobs("packages")
    auth = create_token(publisher_client, ready_index, "read", "laptop")
    base = index_spec(ready_index).base_url
    with index_session(ca_file) as session:
        anonymous = session.get(f"{base}/simple/", timeout=10)
        wrong = session.get(f"{base}/simple/", auth=(auth[0], "not-the-password"), timeout=10)
        unnormalized = session.get(f"{base}/simple/Some_Name/", auth=auth, timeout=10, allow_redirects=False)
        root = session.get(f"{base}/", auth=auth, timeout=10, allow_redirects=False)
        followed = session.get(f"{base}/simple/Some_Name/", auth=auth, timeout=10)

    for response in (anonymous, wrong):
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert "Location" in unnormalized.headers, (unnormalized.status_code, unnormalized.headers, unnormalized.text[:200])
    assert unnormalized.headers["Location"].startswith(f"{base}/simple/some-name/")
    assert "Location" in root.headers, (root.status_code, root.headers, root.text[:200])
    assert root.headers["Location"] in {f"{base}/simple/", "/simple/"}
    assert followed.status_code == 200 and "Some_Name-1.0-py3-none-any.whl" in followed.text


def test_member_cannot_create_a_publish_token(ready_index, member_client) -> None:
    response = member_client.post(f"/indexes/{ready_index.pk}/packages/tokens/", {"label": "x", "kind": "publish"})

    assert response.status_code == 403
    assert not ready_index.credentials.exists()


def test_revoked_token_stops_working_without_a_restart(ready_index, publisher_client, ca_file) -> None:
    username, password = create_token(publisher_client, ready_index, "read", "temporary")
    url = f"{index_spec(ready_index).base_url}/simple/"
    pids_before = index_pids(ready_index)
    with index_session(ca_file) as session:
        assert session.get(url, auth=(username, password), timeout=10).status_code == 200
        credential = ready_index.credentials.get(username=username)

        publisher_client.post(f"/indexes/{ready_index.pk}/packages/tokens/{credential.pk}/revoke/")

        revoked = time.monotonic()
        status = 200
        while time.monotonic() < revoked + 5 and status == 200:
            status = session.get(url, auth=(username, password), timeout=10).status_code
            time.sleep(0.05)
        refused_after = time.monotonic() - revoked
    assert status == 401
    assert refused_after < 1.0  # the index server re-reads the tokens file within a second
    assert index_pids(ready_index) == pids_before
