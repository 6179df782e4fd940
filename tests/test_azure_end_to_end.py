"""The whole index on the Azure path, on this machine: the Azure driver against the emulator,
which runs the container group's commands (the project's caddy and the index server) as processes on
the shares' folders, with pebble standing in for Let's Encrypt.

request → ACME certificate issued and written to caddy-certs through the share → upload → live
→ pip install over HTTPS checking the chain and the host name → restart with no new issuance →
teardown that leaves no process, no file and no resource."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.azure_emulator import AzureEmulator
from devtools.azure_emulator.resolver import child_environment
from devtools.pebble import Pebble
from packages_ui.models import PackageFile
from provisioning import services
from provisioning.certs import inspect_certificate
from provisioning.drivers.backend import get_store
from provisioning.drivers.local_processes import alive
from provisioning.models import CertificateStatus, PrivateIndex
from provisioning.spec import SHARE_CERTS
from tests.builders import build_wheel
from tests.clients import clean_env, twine_upload
from tests.driver_support import get_driver

pytestmark = pytest.mark.e2e


def publish_package(index: PrivateIndex, wheel: Path, actor, run_jobs) -> PackageFile:
    """The package step as CI does it: twine to the portal's upload URL with a publish token; the
    portal writes the file through the File service and the refresh writes the manifest that the
    index server (in the group) picks up, with no container restarted."""
    credential, password = services.credential_create(index=index, kind="publish", label="ci", actor=actor)
    published = twine_upload([wheel], repository_url=index.upload_url, username=credential.username, password=password)
    assert published.returncode == 0, published.stdout + published.stderr
    assert run_jobs("packages") == 1
    return index.package_files.get(filename=wheel.name)


def _certificate_files(index: PrivateIndex) -> list[str]:
    spec = services.index_spec(index)
    host = spec.hostname
    files = get_store().list_files(spec, SHARE_CERTS, "caddy/certificates/")
    return [f.path for f in files if f.path.endswith(f"/{host}/{host}.crt")]


def _pip(python: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=180, env=env)


def _container_pids(emulator: AzureEmulator) -> set[int]:
    groups = emulator.arm.runtime.describe().values()
    return {c["pid"] for group in groups for c in group["containers"].values()}


def test_an_index_on_the_azure_path_gets_an_acme_certificate_serves_pip_over_https_and_keeps_it_across_a_restart(
    azure_emulator_running: AzureEmulator,
    pebble: Pebble,
    team,
    lead,
    publisher,
    run_jobs,
    django_capture_on_commit_callbacks,
    tmp_path,
    live_server,
    settings,
):
    settings.PORTAL_BASE_URL = live_server.url
    emulator = azure_emulator_running
    with django_capture_on_commit_callbacks(execute=True):
        index = services.index_request(team=team, name="journey", size="small", requested_by=lead)
    run_jobs()
    index.refresh_from_db()
    assert index.state == "ready", index.error
    assert index.steps.get(operation="provision", name="certificate").state == "done"
    spec = services.index_spec(index)

    # One certificate, from pebble, for the FQDN, written by Caddy through the share, after
    # pebble validated a challenge that Caddy answered through the group's mapped ports.
    assert pebble.issued_count() == 1
    assert "set VALID by completed challenge" in pebble.log_path.read_text()
    (stored,) = _certificate_files(index)
    driver = get_driver()
    served = inspect_certificate(spec.hostname, 443, ca_pem=driver.ca_certificate_pem(spec))
    assert served.status == CertificateStatus.VALID, served.reason
    assert served.trusted and served.hostname_match
    stored_pem = b"".join(driver.read_file(spec, SHARE_CERTS, stored)).decode()
    assert served.certificate.pem.strip() in stored_pem
    assert served.certificate.sans == [spec.hostname]
    assert "Pebble" in served.certificate.issuer
    # The ACI logs API returns what Caddy really wrote.
    assert "certificate obtained successfully" in driver.container_log_tail(spec, "caddy", lines=200)

    # Upload, live, and pip over HTTPS with the chain and the host name checked.
    wheel = build_wheel(tmp_path, "journey-demo", "1.0")
    pids_before = _container_pids(emulator)
    package = publish_package(index, wheel, publisher, run_jobs)
    assert package.state == PackageFile.State.LIVE
    assert _container_pids(emulator) == pids_before  # live without restarting anything
    _, password = services.credential_create(index=index, kind="read", label="laptop", actor=lead)
    username = index.credentials.get(label="laptop").username
    roots = tmp_path / "acme-roots.pem"
    roots.write_text(driver.ca_certificate_pem(spec))
    python = Path(sys.executable)  # installs into a fresh --target folder: no venv to build
    environment = child_environment(emulator.url, emulator.ca_path, tmp_path / "resolver", clean_env())
    index_url = f"https://{username}:{password}@{spec.hostname}/simple/"
    pip = ["-m", "pip", "install", "--no-cache-dir", "--target", str(tmp_path / "site"), "--index-url", index_url]
    installed = _pip(python, *pip, "--cert", str(roots), "journey-demo==1.0", env=environment)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (tmp_path / "site" / "journey_demo-1.0.dist-info").is_dir()
    # The check is real: the emulator's CA does not vouch for pebble's certificate.
    download = [
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--retries",
        "0",
        "--index-url",
        index_url,
        "-d",
        str(tmp_path / "dl"),
    ]
    refused = _pip(python, *download, "--cert", str(emulator.ca_path), "journey-demo==1.0", env=environment)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr

    # A restart starts new processes that reuse the certificate on caddy-certs.
    before = _container_pids(emulator)
    # Provisioning restarted the group once: Caddy started before its Caddyfile for Azure's FQDN.
    (provisioned,) = emulator.snapshot()["container_groups"].values()
    with django_capture_on_commit_callbacks(execute=True):
        services.index_restart(index=index, actor=lead)
    run_jobs()
    index.refresh_from_db()
    assert index.state == "ready", index.error
    (group,) = emulator.snapshot()["container_groups"].values()
    # This restart only: uploads restart nothing.
    assert group["restart_counts"]["caddy"] == provisioned["restart_counts"]["caddy"] + 1 == 2
    assert len(before) == 2 and not before & _container_pids(emulator)
    again = inspect_certificate(spec.hostname, 443, ca_pem=driver.ca_certificate_pem(spec))
    assert again.status == CertificateStatus.VALID, again.reason
    assert again.certificate.sha256 == served.certificate.sha256
    assert pebble.issued_count() == 1

    # Teardown: no process, no file, no resource.
    pids = emulator.running_pids()
    assert pids
    with django_capture_on_commit_callbacks(execute=True):
        services.index_delete(index=index, actor=lead)
    run_jobs()
    index.refresh_from_db()
    assert index.state == "deleted", index.error
    assert emulator.running_pids() == []
    assert not [pid for pid in pids if alive(pid)]
    snapshot = emulator.snapshot()
    assert snapshot["resource_groups"] == {} and snapshot["storage_accounts"] == {}
    assert snapshot["container_groups"] == {}
    assert not emulator.state.storage_dir.exists() or not any(emulator.state.storage_dir.iterdir())
    assert not any(emulator.arm.runtime.folder.iterdir())


def test_an_index_whose_caddy_cannot_reach_the_acme_ca_fails_the_certificate_step_with_caddys_log(
    azure_emulator_running: AzureEmulator, pebble: Pebble, team, lead, settings, run_jobs,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    # A directory on a port the containers may not reach: no order can ever be placed.
    settings.ACME_DIRECTORY_URL = "https://127.0.0.1:9/dir"
    settings.ACME_CERTIFICATE_TIMEOUT_SECONDS = 3.0
    # When Caddy's crash-loop restart picks up the Caddyfile just before the caddyfile step restarts
    # the group, the stopped Caddy leaves its certificate lock behind and the next one waits until
    # the lock is stale (about 10 s, certmagic's file storage) before it calls the ACME directory.
    # The runner's retries (3 s each, 4 s and 8 s apart) outlast that, so Caddy's log has its own words.
    settings.STEP_RETRY_BACKOFF_SECONDS, settings.STEP_RETRY_BACKOFF_MAX_SECONDS = 4.0, 8.0
    with django_capture_on_commit_callbacks(execute=True):
        index = services.index_request(team=team, name="no-cert", size="small", requested_by=lead)
    run_jobs()
    index.refresh_from_db()

    assert index.state == "failed"
    assert index.failed_step == "certificate"
    step = index.steps.get(operation="provision", name="certificate")
    assert step.label == "Wait for the HTTPS certificate"
    assert f"No valid certificate for {services.index_spec(index).hostname} after 3 s" in index.error
    assert "Caddy's log ends with:" in index.error
    assert "127.0.0.1:9" in index.error.split("Caddy's log ends with:")[1]  # Caddy's own words
    assert pebble.issued_count() == 0
