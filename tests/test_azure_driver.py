"""The Azure driver through the real Azure SDKs, over HTTPS, against the Azure emulator."""

from __future__ import annotations

import hashlib
import io
import os
import re
import time

import pytest

from devtools.azure_emulator.state import new_key
from provisioning.drivers.azure import AzureDriver
from provisioning.drivers.azure_runtime import dns_label, storage_account_name
from provisioning.drivers.azure_store import TEMP_PREFIX
from provisioning.drivers.base import DriverError
from provisioning.spec import (
    MANIFEST_PATH,
    SHARE_CONFIG,
    SHARE_PACKAGES,
    TOKENS_PATH,
    IndexSpec,
    index_caddyfile,
    index_server_source,
)
from tests.azure_fixtures import INDEX_ID
from tests.azure_fixtures import group_definition as _group_definition
from tests.azure_fixtures import index_spec_for as _spec
from tests.azure_fixtures import run_steps as _run
from tests.driver_support import driver_of


def _index_resources(emulator, spec: IndexSpec) -> list[str]:
    """Everything in the emulator tagged with, or named for, this index."""
    snapshot = emulator.snapshot()
    index_tag = str(spec.index_id)
    found = [
        f"account {n}" for n, a in snapshot["storage_accounts"].items() if a["tags"].get("portal-index-id") == index_tag
    ]
    found += [
        f"group {n}" for n, g in snapshot["container_groups"].items() if g["tags"].get("portal-index-id") == index_tag
    ]
    found += [
        f"rg {n}" for n, g in snapshot["resource_groups"].items() if g["tags"].get("portal-index-id") == index_tag
    ]
    return found


# --- names


@pytest.mark.parametrize(
    "name", ["team-index", "a", "9lives", "x" * 63, "data-platform-very-long-index-name-for-testing", "a-b-c-d-e-f"]
)
def test_reserve_derives_valid_azure_names_from_any_index_name(azure_emulator, settings, name):
    settings.AZURE_SUBSCRIPTION_ID = "sub"
    placement = AzureDriver().runtime.reserve(index_id=123456, name=name, previous=None)
    resources = placement.resources

    assert re.fullmatch(r"[a-z0-9]{3,24}", resources["storage_account"])
    assert re.fullmatch(r"[a-z][a-z0-9-]{1,61}[a-z0-9]", resources["dns_label"])
    assert placement.hostname == f"{resources['dns_label']}.westeurope.azurecontainer.io"
    assert (placement.http_port, placement.https_port, placement.server_port) == (80, 443, 8080)
    assert placement.tls == "acme"


def test_names_differ_per_index_id_and_salt_but_are_stable_for_one_index(settings):
    settings.AZURE_NAME_SALT = "prod"
    first = storage_account_name(1, "team-index")

    assert storage_account_name(1, "team-index") == first
    assert storage_account_name(2, "team-index") != first
    assert dns_label(1, "team-index") != dns_label(2, "team-index")
    settings.AZURE_NAME_SALT = "staging"
    assert storage_account_name(1, "team-index") != first


def test_reserve_keeps_a_previous_placement_so_a_retry_lands_on_the_same_resources(driver, spec):
    again = driver.reserve(index_id=INDEX_ID, name="team-index", previous=spec.placement.as_dict())

    assert again == spec.placement


# --- the whole cycle


def test_provision_restart_teardown_cycle_through_the_sdks(azure_emulator, driver, spec):
    _run(driver.deploy_steps(spec))

    account = azure_emulator.snapshot()["storage_accounts"][spec.placement.resources["storage_account"]]
    assert account["sku"] == "Standard_LRS" and account["kind"] == "StorageV2"
    assert account["properties"]["supportsHttpsTrafficOnly"] is True
    assert account["properties"]["minimumTlsVersion"] == "TLS1_2"
    assert account["properties"]["allowBlobPublicAccess"] is False
    assert account["tags"] == {"portal-index-id": "7", "portal-index": "team-index", "portal-team": "data-platform"}
    assert {n: s["quota_gb"] for n, s in account["shares"].items()} == {
        "caddy-certs": 1,
        "caddy-config": 1,
        "pypipackages": 10,
    }
    fqdn = driver.settled_placement(spec).hostname
    caddyfile = b"".join(driver.read_file(spec, SHARE_CONFIG, "Caddyfile")).decode()
    assert caddyfile == index_caddyfile(driver.settled_placement(spec)) and f"\n{fqdn} {{" in caddyfile
    status = driver.status(spec)
    assert status.is_running
    assert [c.name for c in status.containers] == [c.name for c in spec.containers]
    # The group started before the Caddyfile for its FQDN existed: restarted once to read it.
    counts = [c.restart_count for c in status.containers]

    driver.restart(spec)
    assert [c.restart_count for c in driver.status(spec).containers] == [n + 1 for n in counts]

    _run(driver.teardown_steps(spec))
    assert _index_resources(azure_emulator, spec) == []
    assert driver.status(spec).state == "missing"
    assert all(r.status < 500 for r in azure_emulator.requests())


def test_container_group_sent_matches_the_index_spec(azure_emulator, settings, driver, provisioned):
    sent = _group_definition(azure_emulator, provisioned)
    containers = {c["name"]: c["properties"] for c in sent["containers"]}
    account = azure_emulator.state.account(provisioned.placement.resources["storage_account"])

    assert sent["osType"] == "Linux" and sent["restartPolicy"] == "Always"
    assert sent["ipAddress"]["type"] == "Public"
    assert sorted(p["port"] for p in sent["ipAddress"]["ports"]) == [80, 443]  # never 8080
    assert sent["ipAddress"]["dnsNameLabel"] == provisioned.placement.resources["dns_label"]
    assert containers["caddy"]["image"] == settings.CADDY_IMAGE
    assert containers["pypiserver"]["image"] == settings.PYPISERVER_IMAGE
    assert not settings.CADDY_IMAGE.endswith(":latest") and ":" in settings.PYPISERVER_IMAGE
    assert sorted(p["port"] for p in containers["caddy"]["ports"]) == [80, 443]
    assert "ports" not in containers["pypiserver"]
    command = containers["pypiserver"]["command"]
    # The stock pypiserver image runs the index server the portal wrote to the config share.
    assert command[:2] == ["python", "/config/index/server.py"]
    assert command[command.index("--port") + 1] == "8080"
    assert command[command.index("--manifest") + 1] == "/config/index/manifest.json"
    assert command[command.index("--tokens") + 1] == "/config/index/tokens.json"
    assert b"".join(driver.read_file(provisioned, SHARE_CONFIG, "index/server.py")) == index_server_source()
    assert {v["name"]: v["azureFile"]["shareName"] for v in sent["volumes"]} == {
        "caddy-certs": "caddy-certs",
        "caddy-config": "caddy-config",
        "pypipackages": "pypipackages",
    }
    assert all(v["azureFile"]["storageAccountKey"] in account.keys for v in sent["volumes"])
    mounts = {
        c: {(m["name"], m["mountPath"], m.get("readOnly", False)) for m in p["volumeMounts"]}
        for c, p in containers.items()
    }
    assert mounts["caddy"] == {("caddy-certs", "/data", False), ("caddy-config", "/config", False)}
    assert mounts["pypiserver"] == {("pypipackages", "/data/packages", True), ("caddy-config", "/config", True)}
    for spec_container in provisioned.containers:
        requests = containers[spec_container.name]["resources"]["requests"]
        assert requests["cpu"] == spec_container.cpu
        assert abs(requests["memoryInGB"] - spec_container.memory_gb) <= 0.05 + 1e-9  # ACI takes 0.1 GB steps
    assert sum(c["resources"]["requests"]["cpu"] for c in containers.values()) == settings.INDEX_SIZES["small"]["cpu"]


def test_provisioning_twice_leaves_identical_state_and_creates_nothing(azure_emulator, driver, provisioned):
    before = azure_emulator.snapshot()
    azure_emulator.clear_log()

    _run(driver.deploy_steps(provisioned))

    assert azure_emulator.snapshot() == before
    writes = [r for r in azure_emulator.requests("file") if r.method in ("PUT", "DELETE")]
    assert writes == []
    assert not [r for r in azure_emulator.requests("arm") if r.status == 201]


def test_a_retry_never_overwrites_the_tokens_or_the_manifest_the_portal_wrote(azure_emulator, driver, provisioned):
    tokens = b'{"version": 1, "tokens": {"reader": "hmac-sha256$00$00"}}'
    manifest = b'{"version": 1, "generation": "g1", "files": []}'
    for path, data in ((TOKENS_PATH, tokens), (MANIFEST_PATH, manifest)):
        driver.write_file(provisioned, SHARE_CONFIG, path, io.BytesIO(data), size=len(data))

    _run(driver.deploy_steps(provisioned))

    assert b"".join(driver.read_file(provisioned, SHARE_CONFIG, TOKENS_PATH)) == tokens
    assert b"".join(driver.read_file(provisioned, SHARE_CONFIG, MANIFEST_PATH)) == manifest


def test_storage_keys_are_fetched_once_per_provisioning_and_never_logged(azure_emulator, driver, spec, caplog):
    caplog.set_level("DEBUG")

    _run(driver.deploy_steps(spec))

    account = azure_emulator.state.account(spec.placement.resources["storage_account"])
    assert len([r for r in azure_emulator.requests("arm") if r.path.lower().endswith("/listkeys")]) == 1
    assert not any(key in caplog.text for key in account.keys)


def test_teardown_twice_is_fine_and_leaves_nothing(azure_emulator, driver, provisioned):
    _run(driver.teardown_steps(provisioned))
    _run(driver.teardown_steps(provisioned))

    assert _index_resources(azure_emulator, provisioned) == []


def test_per_index_resource_groups_are_created_and_deleted_with_the_index(azure_emulator, settings):
    settings.AZURE_RESOURCE_GROUP_POLICY = "per-index"
    driver = driver_of(AzureDriver())
    spec = _spec(driver)

    _run(driver.deploy_steps(spec))
    assert any(
        k.endswith(spec.placement.resources["resource_group"]) for k in azure_emulator.snapshot()["resource_groups"]
    )
    _run(driver.teardown_steps(spec))

    assert azure_emulator.snapshot() == {"resource_groups": {}, "storage_accounts": {}, "container_groups": {}}


def test_ensure_running_recreates_a_container_group_that_disappeared(azure_emulator, driver, provisioned):
    driver.containers.container_groups.begin_delete(
        provisioned.placement.resources["resource_group"], provisioned.placement.resources["container_group"]
    ).result()

    assert driver.ensure_running(provisioned) is True
    assert driver.status(provisioned).is_running
    assert driver.ensure_running(provisioned) is False


def test_status_reports_restart_counts_and_recent_events(azure_emulator, driver, provisioned):
    before = {c.name: c.restart_count for c in driver.status(provisioned).containers}
    azure_emulator.arm.crash_container(provisioned.placement.resources["container_group"], "pypiserver")

    status = driver.status(provisioned)

    pypiserver = next(c for c in status.containers if c.name == "pypiserver")
    assert pypiserver.restart_count == before["pypiserver"] + 1
    assert "exit code 1" in pypiserver.last_event


# --- files on the shares


def test_files_are_written_via_a_temporary_name_listed_recursively_and_deleted(azure_emulator, driver, provisioned):
    data = os.urandom(9 * 1024 * 1024 + 17)
    driver.write_file(
        provisioned, SHARE_PACKAGES, "team/pkg/pkg-1.0-py3-none-any.whl", io.BytesIO(data), size=len(data)
    )
    driver.write_file(provisioned, SHARE_PACKAGES, "top.tar.gz", io.BytesIO(b"top"), size=3)
    share = driver._share(provisioned, SHARE_PACKAGES)
    share.get_file_client(f"team/{TEMP_PREFIX}abandoned-x.whl").upload_file(b"half")

    listed = driver.list_files(provisioned, SHARE_PACKAGES)
    below = driver.list_files(provisioned, SHARE_PACKAGES, prefix="team/")
    back = b"".join(driver.read_file(provisioned, SHARE_PACKAGES, "team/pkg/pkg-1.0-py3-none-any.whl"))
    driver.delete_file(provisioned, SHARE_PACKAGES, "top.tar.gz")
    driver.delete_file(provisioned, SHARE_PACKAGES, "top.tar.gz")

    assert [(f.path, f.size) for f in listed] == [("team/pkg/pkg-1.0-py3-none-any.whl", len(data)), ("top.tar.gz", 3)]
    assert [f.path for f in below] == ["team/pkg/pkg-1.0-py3-none-any.whl"]
    assert all(f.modified is not None for f in listed)
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    assert [f.path for f in driver.list_files(provisioned, SHARE_PACKAGES)] == ["team/pkg/pkg-1.0-py3-none-any.whl"]
    writes = [r for r in azure_emulator.requests("file") if "pkg-1.0" in r.path and r.method == "PUT"]
    assert TEMP_PREFIX in writes[0].path and "comp=rename" in writes[-1].query
    assert len([w for w in writes if "comp=range" in w.query]) == 3  # 4 MiB ranges


def test_reading_a_missing_file_is_a_permanent_driver_error(driver, provisioned):
    with pytest.raises(DriverError) as error:
        driver.read_file(provisioned, SHARE_PACKAGES, "nope.whl")

    assert error.value.permanent
    assert "ResourceNotFound" in error.value.message


def test_a_rotated_storage_key_is_fetched_again(azure_emulator, driver, provisioned):
    account = azure_emulator.state.account(provisioned.placement.resources["storage_account"])
    account.keys = [new_key(), new_key()]

    driver.write_file(provisioned, SHARE_PACKAGES, "after-rotation.whl", io.BytesIO(b"ok"), size=2)

    assert [f.path for f in driver.list_files(provisioned, SHARE_PACKAGES)] == ["after-rotation.whl"]


# --- faults


def test_throttling_with_retry_after_is_retried_then_succeeds(azure_emulator, driver, spec):
    fault = azure_emulator.inject("PUT", "/storageAccounts/[^/]+$", status=429, retry_after=1, times=2)

    _run(driver.deploy_steps(spec))

    assert fault.hits == 2
    assert driver.status(spec).is_running


def test_server_errors_and_reset_connections_are_retried_by_the_sdk(azure_emulator, driver, spec):
    azure_emulator.inject("PUT", "/containerGroups/[^/]+$", status=500, times=2)
    azure_emulator.inject("GET", "/containerGroups/[^/]+$", drop=True, times=1)
    azure_emulator.inject("PUT", "/fileServices/default/shares/pypipackages$", drop=True, times=1)
    azure_emulator.inject("PUT", "/caddy-config/", query="comp=range", status=503, times=1)

    _run(driver.deploy_steps(spec))

    assert driver.status(spec).is_running
    assert len(azure_emulator.snapshot()["container_groups"]) == 1


def test_a_reset_connection_on_a_post_fails_the_step_transiently_and_a_rerun_succeeds(azure_emulator, driver, spec):
    azure_emulator.inject("POST", "/listKeys$", drop=True, times=1)
    steps = driver.deploy_steps(spec)

    with pytest.raises(DriverError) as error:
        _run(steps)
    _run(steps)

    assert not error.value.permanent
    assert "Azure did not answer" in error.value.message
    assert driver.status(spec).is_running


def _group_puts(emulator) -> list:
    return [r for r in emulator.requests("arm") if r.method == "PUT" and "containerGroups" in r.path]


def test_an_answer_slower_than_the_timeout_is_retried_without_duplicating(azure_emulator, settings, spec):
    settings.AZURE_READ_TIMEOUT_SECONDS = 1.0
    driver = driver_of(AzureDriver())
    azure_emulator.inject("PUT", "/containerGroups/[^/]+$", delay=1.5, times=1)

    _run(driver.deploy_steps(spec))

    deadline = time.monotonic() + 5
    while len(_group_puts(azure_emulator)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the timed-out PUT is still being carried out by the emulator
    assert len(_group_puts(azure_emulator)) == 2  # the timed-out one and the retry, on the same group
    assert len(azure_emulator.snapshot()["container_groups"]) == 1
    assert driver.status(spec).is_running


def test_a_restart_slower_than_the_timeout_fails_cleanly_and_can_be_retried(azure_emulator, settings, provisioned):
    settings.AZURE_READ_TIMEOUT_SECONDS = 1.0
    driver = driver_of(AzureDriver())
    azure_emulator.inject("POST", "/restart$", delay=1.5, times=1)

    with pytest.raises(DriverError) as error:
        driver.restart(provisioned)
    driver.restart(provisioned)

    assert not error.value.permanent
    assert driver.status(provisioned).is_running


def test_an_outage_that_outlasts_the_retries_fails_transiently(azure_emulator, driver, spec):
    azure_emulator.inject("PUT", "/storageAccounts/[^/]+$", status=503, times=None)

    with pytest.raises(DriverError) as error:
        _run(driver.deploy_steps(spec))

    assert not error.value.permanent
    assert "ServerBusy" in error.value.message


def test_a_taken_storage_account_name_fails_permanently_with_the_azure_message(azure_emulator, driver, spec):
    azure_emulator.configure(taken_storage_names={spec.placement.resources["storage_account"]})

    with pytest.raises(DriverError) as error:
        _run(driver.deploy_steps(spec))

    assert error.value.permanent
    assert (
        f"The storage account named {spec.placement.resources['storage_account']} is already taken."
        in error.value.message
    )
    assert _index_resources(azure_emulator, spec) == []


def test_a_container_quota_error_fails_permanently_and_teardown_leaves_nothing(azure_emulator, driver, spec):
    azure_emulator.configure(core_quota=0.5)

    with pytest.raises(DriverError) as error:
        _run(driver.deploy_steps(spec))
    _run(driver.teardown_steps(spec))

    assert error.value.permanent
    assert "ContainerGroupQuotaReached" in error.value.message and "StandardCores" in error.value.message
    assert _index_resources(azure_emulator, spec) == []


def test_an_authorization_failure_fails_permanently_with_the_azure_message(azure_emulator, driver, spec):
    azure_emulator.configure(denied_actions={"Microsoft.ContainerInstance/containerGroups/write"})

    with pytest.raises(DriverError) as error:
        _run(driver.deploy_steps(spec))

    assert error.value.permanent
    assert "AuthorizationFailed" in error.value.message
    assert "Microsoft.ContainerInstance/containerGroups/write" in error.value.message


def test_a_failed_deployment_fails_permanently_with_azures_reason(azure_emulator, driver, spec):
    azure_emulator.configure(group_failures={"*": "Failed to pull image: manifest unknown"})

    with pytest.raises(DriverError) as error:
        _run(driver.deploy_steps(spec))

    assert error.value.permanent
    assert "manifest unknown" in error.value.message
    assert driver.status(spec).state == "failed"


def test_a_missing_subscription_setting_is_a_permanent_driver_error(azure_emulator, settings, spec):
    settings.AZURE_SUBSCRIPTION_ID = ""

    with pytest.raises(DriverError, match="AZURE_SUBSCRIPTION_ID") as error:
        AzureDriver().runtime.status(spec)

    assert error.value.permanent


def test_a_wrong_service_principal_secret_fails_permanently_with_the_entra_message(azure_emulator, monkeypatch, spec):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret")

    with pytest.raises(DriverError) as error:
        _run(AzureDriver().runtime.deploy_steps(spec))

    assert error.value.permanent
    assert "AADSTS7000215" in error.value.message


def test_a_long_running_operation_that_never_ends_times_out_transiently(azure_emulator, settings, spec):
    settings.AZURE_LRO_TIMEOUT_SECONDS = 0.3
    settings.AZURE_POLLING_INTERVAL_SECONDS = 0.02
    driver = driver_of(AzureDriver())
    azure_emulator.configure(storage_polls=10**9)

    with pytest.raises(DriverError, match=r"did not finish within 0\.3 s") as error:
        _run(driver.deploy_steps(spec))
    azure_emulator.reset()  # the abandoned poller's next poll gets a 404 and its thread ends

    assert not error.value.permanent


@pytest.mark.parametrize("path", ["../evil.whl", "a/../../evil.whl", "/abs.whl", "dir\\evil.whl", ""])
def test_paths_that_could_leave_a_share_are_refused_before_any_request(azure_emulator, driver, spec, path):
    azure_emulator.clear_log()
    for call in (
        lambda: driver.write_file(spec, SHARE_PACKAGES, path, io.BytesIO(b"x"), size=1),
        lambda: driver.read_file(spec, SHARE_PACKAGES, path),
        lambda: driver.delete_file(spec, SHARE_PACKAGES, path),
    ):
        with pytest.raises(DriverError) as error:
            call()
        assert error.value.permanent
    assert azure_emulator.requests() == []
