"""The emulator runs what it is given: a container group's commands become local processes in the
group's own network namespace, on the shares' folders, with only their declared environment,
their public ports mapped to loopback ports, their output behind the ACI logs API, and every
process stopped by PID on restart, delete and emulator stop (real Azure SDKs, no portal code)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerinstance import models as aci
from azure.mgmt.storage.models import FileShare, Sku, StorageAccountCreateParameters
from azure.storage.fileshare import ShareServiceClient

from devtools.azure_emulator import AzureEmulator
from provisioning.drivers.local_processes import alive
from tests.azure_fixtures import sdk_clients

pytestmark = pytest.mark.e2e

RG = "rg-runtime"
LOCATION = "westeurope"
ACCOUNT = "runtimeacct1"
# Writes its environment's names to the file it is given (on the share), says so, then answers
# HTTP on port 80. Mount paths are mapped where they are arguments or environment values.
APP = """
import json, os, sys, http.server
open(sys.argv[1], "w").write(json.dumps(sorted(os.environ)))
print("app started, greeting", os.environ["GREETING"], flush=True)
class Pong(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"pong " + os.environ["GREETING"].encode())
http.server.HTTPServer(("127.0.0.1", 80), Pong).serve_forever()
"""


@pytest.fixture
def running(tmp_path, monkeypatch) -> Iterator[SimpleNamespace]:
    # A secret in the emulator's own environment must never reach a container.
    monkeypatch.setenv("PORTAL_SECRET_CANARY", "do-not-leak")
    emulator = AzureEmulator(cert_dir=tmp_path / "emulator", run_containers=True).start()
    try:
        for name, value in emulator.environment().items():
            monkeypatch.setenv(name, value)
        clients = sdk_clients(emulator)
        clients.resources.resource_groups.create_or_update(RG, {"location": LOCATION})
        clients.storage.storage_accounts.begin_create(
            RG,
            ACCOUNT,
            StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOCATION),
        ).result()
        clients.storage.file_shares.create(RG, ACCOUNT, "data", FileShare(share_quota=5, enabled_protocols="SMB"))
        clients.key = clients.storage.storage_accounts.list_keys(RG, ACCOUNT).keys_property[0].value
        yield clients
    finally:
        emulator.stop()


def _group(key: str, command: list[str]) -> aci.ContainerGroup:
    return aci.ContainerGroup(
        location=LOCATION,
        os_type="Linux",
        restart_policy="Always",
        containers=[
            aci.Container(
                name="app",
                image="docker.io/library/python:3.11-slim",
                command=command,
                ports=[aci.ContainerPort(port=80)],
                environment_variables=[
                    aci.EnvironmentVariable(name="GREETING", value="hello"),
                    aci.EnvironmentVariable(name="DB_PASSWORD", secure_value="s3cret"),
                ],
                resources=aci.ResourceRequirements(requests=aci.ResourceRequests(cpu=0.5, memory_in_gb=0.5)),
                volume_mounts=[aci.VolumeMount(name="data", mount_path="/mnt/data")],
            )
        ],
        ip_address=aci.IpAddress(type="Public", ports=[aci.Port(port=80)], dns_name_label="runtime-app"),
        volumes=[
            aci.Volume(
                name="data",
                azure_file=aci.AzureFileVolume(
                    share_name="data", storage_account_name=ACCOUNT, storage_account_key=key
                ),
            )
        ],
    )


def _wait_for(condition, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _pong(port: int) -> str:
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
    except requests.RequestException:
        return ""


def _app_pid(emulator: AzureEmulator) -> int:
    (group,) = emulator.arm.runtime.describe().values()
    return group["containers"]["app"]["pid"]


def test_a_container_group_runs_its_command_on_the_share_with_only_its_declared_environment(running):
    emulator = running.emulator
    running.containers.container_groups.begin_create_or_update(
        RG, "app", _group(running.key, ["python", "-c", APP, "/mnt/data/env.json"])
    ).result()

    # Its public port 80 is a loopback port here, reported for the group's FQDN.
    ((fqdn, ports),) = emulator.public_ports().items()
    assert fqdn == f"runtime-app.{LOCATION}.azurecontainer.io" and set(ports) == {80}
    assert _wait_for(lambda: _pong(ports[80])) == "pong hello"
    # What the process wrote to /mnt/data is in the share, read through the File service.
    share = ShareServiceClient(
        account_url=f"{emulator.url}/{ACCOUNT}",
        credential={"account_name": ACCOUNT, "account_key": running.key},
        connection_verify=str(emulator.ca_path),
    ).get_share_client("data")
    names = json.loads(share.get_file_client("env.json").download_file().readall())
    assert set(names) == {"GREETING", "DB_PASSWORD", "PATH", "HOME", "LANG"}
    # The ACI logs API returns the process's real output.
    logs = running.containers.containers.list_logs(RG, "app", "app", tail=5)
    assert "app started, greeting hello" in logs.content


def test_a_restart_starts_new_processes_and_a_delete_stops_them(running):
    emulator = running.emulator
    running.containers.container_groups.begin_create_or_update(
        RG, "app", _group(running.key, ["python", "-c", APP, "/mnt/data/env.json"])
    ).result()
    port = emulator.public_ports()[f"runtime-app.{LOCATION}.azurecontainer.io"][80]
    assert _wait_for(lambda: _pong(port))
    first = _app_pid(emulator)

    running.containers.container_groups.begin_restart(RG, "app").result()
    for _ in range(2):  # a restart is asynchronous: it happens by the second look
        running.containers.container_groups.get(RG, "app")
    assert not alive(first)
    assert _app_pid(emulator) != first
    assert _wait_for(lambda: _pong(port)) == "pong hello"  # the mapping outlives the restart
    group = running.containers.container_groups.get(RG, "app")
    assert group.containers[0].instance_view.restart_count == 1

    pids = emulator.running_pids()
    running.containers.container_groups.begin_delete(RG, "app").result()
    assert emulator.running_pids() == []
    assert not [pid for pid in pids if alive(pid)]
    assert _pong(port) == ""


def test_a_command_the_emulator_cannot_run_fails_the_deployment_with_a_clear_message(running):
    with pytest.raises(HttpResponseError) as failure:
        running.containers.container_groups.begin_create_or_update(
            RG, "app", _group(running.key, ["bash", "-c", "echo hi"])
        ).result()
    assert "cannot run 'bash'" in str(failure.value) and "caddy, pypi-server, python" in str(failure.value)
    assert running.emulator.running_pids() == []


def test_stopping_the_emulator_stops_every_process_and_removes_the_shares(running):
    emulator = running.emulator
    running.containers.container_groups.begin_create_or_update(
        RG, "app", _group(running.key, ["python", "-c", APP, "/mnt/data/env.json"])
    ).result()
    pids = emulator.running_pids()
    assert len(pids) == 2  # the namespace holder and the app

    emulator.stop()
    assert not [pid for pid in pids if alive(pid)]
    assert not emulator.state.storage_dir.exists()
    assert not emulator.arm.runtime.folder.exists()
