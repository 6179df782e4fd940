"""The portal's provisioning services and jobs with PROVISIONING_DRIVER set to the Azure driver,
against the Azure emulator: an index goes ready with its FQDN, failures show the step and
Azure's error, Retry resumes, teardown leaves nothing, and a worker SIGKILLed mid-step is
recovered without duplicating anything."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from rq.registry import StartedJobRegistry

from devtools.azure_emulator.resolver import child_environment
from provisioning import services
from provisioning.models import PrivateIndex, ProvisioningStep
from provisioning.spec import SHARE_CONFIG, TOKENS_PATH
from tests.azure_fixtures import azure_environment

ROOT = Path(__file__).resolve().parent.parent


def _index_resources(emulator, index: PrivateIndex) -> dict[str, list[str]]:
    snapshot = emulator.snapshot()
    tag = str(index.pk)
    return {
        "accounts": [n for n, a in snapshot["storage_accounts"].items() if a["tags"].get("portal-index-id") == tag],
        "groups": [n for n, g in snapshot["container_groups"].items() if g["tags"].get("portal-index-id") == tag],
    }


@pytest.fixture
def azure_index(azure_emulator, team, lead) -> PrivateIndex:
    return PrivateIndex.objects.create(name="azure-index", team=team, requested_by=lead)


def test_an_index_goes_ready_with_its_fqdn_url_and_its_credentials_on_the_share(
    azure_emulator, azure_index, lead_client
):
    services.index_provision_perform(azure_index.pk)

    azure_index.refresh_from_db()
    resources = azure_index.deployment["resources"]
    group = next(iter(azure_emulator.state.container_groups.values()))
    assert azure_index.state == "ready", azure_index.error
    # The FQDN is Azure's (hashed for the TenantReuse scope), read from its answer and stored.
    assert group.fqdn.startswith(f"{resources['dns_label']}.") and group.fqdn.endswith(".westeurope.azurecontainer.io")
    assert group.fqdn.count(".") == 4
    assert azure_index.url == f"https://{group.fqdn}/simple/"
    assert azure_index.deployment["hostname"] == resources["fqdn"] == group.fqdn
    assert set(azure_index.steps.values_list("state", flat=True)) == {ProvisioningStep.State.DONE}
    account = azure_emulator.state.account(azure_index.deployment["resources"]["storage_account"])
    tokens = json.loads(bytes(account.shares[SHARE_CONFIG].files[TOKENS_PATH].data))["tokens"]
    assert tokens[services.PORTAL_USERNAME].startswith("hmac-sha256$")
    page = lead_client.get(azure_index.get_absolute_url())
    assert azure_index.url in page.content.decode()
    assert "Container group" in page.content.decode()


def test_a_failed_deployment_shows_the_step_and_azures_error_and_retry_resumes_there(azure_emulator, azure_index, lead):
    azure_emulator.configure(group_failures={"*": "Failed to pull image 'caddy': manifest unknown"})

    services.index_provision_perform(azure_index.pk)

    azure_index.refresh_from_db()
    assert azure_index.state == "failed"
    assert azure_index.failed_step == "running"
    assert "manifest unknown" in azure_index.error
    azure_emulator.clear_log()

    services.index_retry(index=azure_index, actor=lead)
    services.index_provision_perform(azure_index.pk)

    azure_index.refresh_from_db()
    assert azure_index.state == "ready", azure_index.error
    attempts = dict(azure_index.steps.filter(operation="provision").values_list("name", "attempts"))
    assert attempts["storage_account"] == 1 and attempts["container_group"] == 2
    assert not [r for r in azure_emulator.requests("arm") if "storageAccounts" in r.path and r.method == "PUT"]


def test_a_taken_storage_account_name_fails_the_index_with_the_azure_message(azure_emulator, azure_index, settings):
    from provisioning.drivers.azure_runtime import storage_account_name

    taken = storage_account_name(azure_index.pk, azure_index.name)
    azure_emulator.configure(taken_storage_names={taken})

    services.index_provision_perform(azure_index.pk)

    azure_index.refresh_from_db()
    assert azure_index.state == "failed" and azure_index.failed_step == "storage_account"
    assert f"The storage account named {taken} is already taken." in azure_index.error


def test_restart_and_teardown_from_the_portal_leave_nothing_in_azure(azure_emulator, azure_index, lead):
    services.index_provision_perform(azure_index.pk)
    azure_index.refresh_from_db()
    azure_emulator.clear_log()

    services.index_restart(index=azure_index, actor=lead)
    services.index_restart_perform(azure_index.pk)
    azure_index.refresh_from_db()
    assert azure_index.state == "ready", azure_index.error
    assert [r.status for r in azure_emulator.requests("arm") if r.path.endswith("/restart")] == [204]

    services.index_delete(index=azure_index, actor=lead)
    services.index_teardown_perform(azure_index.pk)
    azure_index.refresh_from_db()
    assert azure_index.state == "deleted", azure_index.error
    assert _index_resources(azure_emulator, azure_index) == {"accounts": [], "groups": []}


# --- a real worker killed in the middle of a step


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "provisioning", "--burst"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_provisioning_is_recovered_without_duplicating_anything(
    azure_emulator_running, team, lead, tmp_path
):
    # The workers are separate processes: the index they build really runs (its certificate
    # step needs Caddy), so this runs on the emulator that runs containers, with pebble.
    azure_emulator = azure_emulator_running
    database = settings.DATABASES["default"]
    env = {
        **child_environment(azure_emulator.url, azure_emulator.ca_path, tmp_path / "resolver"),
        **azure_environment(azure_emulator, **azure_emulator.acme_settings),
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "1",
        # The killed worker's index lock then expires after 2 s instead of a minute.
        "INDEX_LOCK_TTL_SECONDS": "2",
    }
    # The container group PUT hangs long enough for the worker to be killed while it waits.
    hang = azure_emulator.inject("PUT", "/containerGroups/[^/]+$", delay=3.0, times=1)
    index = services.index_request(team=team, name="killed-index", size="small", requested_by=lead)
    worker = _worker(env)
    horse: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while hang.hits == 0 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        assert hang.hits == 1, worker.stderr.read() if worker.poll() is not None else "the PUT never came"
        horse = _children(worker.pid)
        for pid in [*horse, worker.pid]:  # the work horse runs in its own session: kill both
            os.kill(pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    for pid in horse:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.waitpid(pid, 0)
    index.refresh_from_db()
    assert index.state == "provisioning"
    assert ProvisioningStep.objects.get(index=index, name="container_group").state == "running"

    # Time passing, compressed: RQ's cleanup declares the dead worker's job abandoned once its
    # heartbeat lapses (~90 s); the index lock, no longer renewed, expires by itself.
    queue = django_rq.get_queue("provisioning")
    StartedJobRegistry(queue=queue).cleanup(timestamp=int(time.time()) + 100_000)
    deadline = time.monotonic() + 10
    while queue.connection.exists(f"lock:index:{index.pk}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not queue.connection.exists(f"lock:index:{index.pk}")
    while len([r for r in azure_emulator.requests("arm") if r.fault == hang.id]) == 0:
        time.sleep(0.05)  # the hung PUT was still carried out by Azure

    assert services.index_reconcile()["requeued"] == 1
    rerun = _worker(env)
    _, errors = rerun.communicate(timeout=120)

    index.refresh_from_db()
    assert index.state == "ready", (index.error, errors[-2000:])
    resources = _index_resources(azure_emulator, index)
    assert len(resources["accounts"]) == 1 and len(resources["groups"]) == 1
    account = azure_emulator.state.account(resources["accounts"][0])
    assert sorted(account.shares) == ["caddy-certs", "caddy-config", "pypipackages"]
    assert sorted(account.shares[SHARE_CONFIG].files) == [
        "Caddyfile", "index/manifest.json", "index/server.py", "index/tokens.json"
    ]  # fmt: skip
    steps = list(index.steps.filter(operation="provision").values_list("name", flat=True))
    assert len(steps) == len(set(steps))
    group = next(iter(azure_emulator.state.container_groups.values()))
    assert group.generation == 1  # the re-run read the group, found the same definition and sent nothing
