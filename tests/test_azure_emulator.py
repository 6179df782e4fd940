"""The Azure emulator, exercised with the real Azure SDKs over HTTPS (no portal code involved)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.containerinstance import models as aci
from azure.mgmt.storage.models import FileShare, Sku, StorageAccountCreateParameters
from azure.storage.fileshare import ShareServiceClient

from devtools.azure_emulator import AzureEmulator
from tests.azure_fixtures import sdk_clients

# Microsoft's published REST specs, kept in the project's shared/ folder beside this checkout.
SPECS = Path(
    os.environ.get("AZURE_SPECS_DIR", Path(__file__).resolve().parents[2] / "shared" / "azure-specs" / "specification")
)
ACI_SPEC = (
    SPECS / "containerinstance/resource-manager/Microsoft.ContainerInstance/stable/2023-05-01/containerInstance.json"
)
RG = "rg-emulator"
LOCATION = "westeurope"


@pytest.fixture
def sdk(azure_emulator: AzureEmulator) -> SimpleNamespace:
    """The three management clients, authenticated through the real azure-identity path."""
    clients = sdk_clients(azure_emulator)
    clients.resources.resource_groups.create_or_update(RG, {"location": LOCATION})
    return clients


def _account(sdk: SimpleNamespace, name: str = "emuacct1") -> str:
    """Create a storage account with a share and return its first key."""
    sdk.storage.storage_accounts.begin_create(
        RG, name, StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOCATION)
    ).result()
    sdk.storage.file_shares.create(RG, name, "data", FileShare(share_quota=5, enabled_protocols="SMB"))
    return sdk.storage.storage_accounts.list_keys(RG, name).keys_property[0].value


def _share_service(emulator: AzureEmulator, account: str, key: str) -> ShareServiceClient:
    return ShareServiceClient(
        account_url=f"{emulator.url}/{account}",
        credential={"account_name": account, "account_key": key},
        connection_verify=str(emulator.ca_path),
        retry_total=0,
    )


def _group(account: str, key: str, *, ports: tuple[int, ...] = (443,)) -> aci.ContainerGroup:
    return aci.ContainerGroup(
        location=LOCATION,
        os_type="Linux",
        restart_policy="Always",
        containers=[
            aci.Container(
                name="web",
                image="docker.io/library/caddy:2.11.7-alpine",
                ports=[aci.ContainerPort(port=p) for p in ports],
                resources=aci.ResourceRequirements(requests=aci.ResourceRequests(cpu=1.0, memory_in_gb=1.5)),
                volume_mounts=[aci.VolumeMount(name="data", mount_path="/data")],
            )
        ],
        ip_address=aci.IpAddress(type="Public", ports=[aci.Port(port=p) for p in ports], dns_name_label="emu-label"),
        volumes=[
            aci.Volume(
                name="data",
                azure_file=aci.AzureFileVolume(
                    share_name="data", storage_account_name=account, storage_account_key=key
                ),
            )
        ],
    )


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _spec_problems(instance: object, schema: dict, base: Path, where: str = "") -> list[str]:
    """Where a response breaks the published spec: required properties missing, values outside
    a closed enum. Follows $refs, also into the common types."""
    if "$ref" in schema:
        file_part, _, pointer = schema["$ref"].partition("#")
        base = (base.parent / file_part).resolve() if file_part else base
        schema = _load(base)
        for part in pointer.strip("/").split("/"):
            schema = schema[part]
    problems: list[str] = []
    for parent in schema.get("allOf", []):
        problems += _spec_problems(instance, parent, base, where)
    closed = schema.get("enum") and not (schema.get("x-ms-enum") or {}).get("modelAsString", False)
    if closed and instance not in schema["enum"]:
        problems.append(f"{where}={instance!r} not in {schema['enum']}")
    if isinstance(instance, dict):
        problems += [f"{where}.{name} missing" for name in schema.get("required", []) if name not in instance]
        for name, sub in (schema.get("properties") or {}).items():
            if name in instance and instance[name] is not None:
                problems += _spec_problems(instance[name], sub, base, f"{where}.{name}")
    elif isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            problems += _spec_problems(item, schema["items"], base, f"{where}[{i}]")
    return problems


def _arm_get(emulator: AzureEmulator, sdk: SimpleNamespace, path: str, method: str = "GET") -> dict:
    token = sdk.credential.get_token("https://management.azure.com/.default").token
    return requests.request(
        method,
        f"{emulator.url}/subscriptions/{emulator.subscription_id}/resourceGroups/{RG}{path}",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(emulator.ca_path),
        timeout=10,
    ).json()


def test_service_principal_gets_its_token_from_the_emulator_through_azure_identity(azure_emulator, sdk):
    token = sdk.credential.get_token("https://management.azure.com/.default")

    assert token.token in azure_emulator.state.tokens
    identity_paths = [r.path for r in azure_emulator.requests("identity")]
    assert any(p.endswith("/oauth2/v2.0/token") for p in identity_paths)


def test_a_wrong_client_secret_is_refused_by_the_token_endpoint(azure_emulator):
    credential = ClientSecretCredential(
        azure_emulator.tenant_id,
        azure_emulator.client_id,
        "not-the-secret",
        authority=azure_emulator.url,
        disable_instance_discovery=True,
        connection_verify=str(azure_emulator.ca_path),
    )

    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token("https://management.azure.com/.default")


def test_arm_refuses_a_bearer_token_it_did_not_issue(azure_emulator):
    response = requests.get(
        f"{azure_emulator.url}/subscriptions/{azure_emulator.subscription_id}/resourcegroups/x?api-version=2025-04-01",
        headers={"Authorization": "Bearer forged"},
        verify=str(azure_emulator.ca_path),
        timeout=10,
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_storage_account_creation_is_polled_through_its_location_header_until_done(azure_emulator, sdk):
    azure_emulator.configure(storage_polls=2)

    account = sdk.storage.storage_accounts.begin_create(
        RG,
        "emuacct2",
        StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOCATION),
    ).result()

    assert account.provisioning_state == "Succeeded"
    assert account.primary_endpoints.file == f"{azure_emulator.url}/emuacct2/"
    statuses = [
        (r.method, r.status)
        for r in azure_emulator.requests("arm")
        if "emuacct2" in r.path or "asyncoperations" in r.path
    ]
    assert statuses == [("PUT", 202), ("GET", 202), ("GET", 202), ("GET", 200)]


def test_storage_account_names_are_validated_and_global(azure_emulator, sdk):
    azure_emulator.configure(taken_storage_names={"someoneelses"})
    params = StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOCATION)

    with pytest.raises(HttpResponseError) as invalid:
        sdk.storage.storage_accounts.begin_create(RG, "Bad_Name", params).result()
    with pytest.raises(HttpResponseError) as taken:
        sdk.storage.storage_accounts.begin_create(RG, "someoneelses", params).result()

    assert invalid.value.error.code == "AccountNameInvalid"
    assert taken.value.error.code == "StorageAccountAlreadyTaken"
    assert "The storage account named someoneelses is already taken." in str(taken.value)


def test_container_group_goes_from_pending_to_running_and_matches_the_published_spec(azure_emulator, sdk):
    key = _account(sdk)
    azure_emulator.configure(group_polls=2)

    poller = sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key))
    created = poller.result()

    assert created.provisioning_state == "Succeeded"
    assert created.instance_view.state == "Running"
    assert created.containers[0].instance_view.current_state.state == "Running"
    assert created.ip_address.fqdn == f"emu-label.{LOCATION}.azurecontainer.io"
    assert created.volumes[0].azure_file.storage_account_key is None  # write-only, never returned
    put = next(r for r in azure_emulator.requests("arm") if r.method == "PUT" and "containerGroups" in r.path)
    assert put.status == 201
    polls = [r.status for r in azure_emulator.requests("arm") if "/operations/" in r.path]
    assert polls == [200, 200]  # InProgress, then Succeeded
    raw = _arm_get(azure_emulator, sdk, "/providers/Microsoft.ContainerInstance/containerGroups/emu-group")
    assert "containers" in raw["properties"] and raw["properties"]["osType"] == "Linux"
    if ACI_SPEC.exists():
        assert _spec_problems(raw, {"$ref": "#/definitions/ContainerGroup"}, ACI_SPEC) == []


@pytest.mark.skipif(not SPECS.exists(), reason="the published REST specs are not on this machine")
def test_storage_and_resource_group_answers_match_the_published_specs(azure_emulator, sdk):
    _account(sdk)
    storage_spec = SPECS / "storage/resource-manager/Microsoft.Storage/stable/2026-09-01/openapi.json"
    resources_spec = SPECS / "resources/resource-manager/Microsoft.Resources/stable/2025-04-01/resources.json"
    account_path = "/providers/Microsoft.Storage/storageAccounts/emuacct1"

    account = _arm_get(azure_emulator, sdk, account_path)
    share = _arm_get(azure_emulator, sdk, account_path + "/fileServices/default/shares/data")
    keys = _arm_get(azure_emulator, sdk, account_path + "/listKeys", method="POST")
    group = _arm_get(azure_emulator, sdk, "")

    assert _spec_problems(account, {"$ref": "#/definitions/StorageAccount"}, storage_spec) == []
    assert _spec_problems(share, {"$ref": "#/definitions/FileShare"}, storage_spec) == []
    # The one known spec/service mismatch: the service says "FULL", the spec's enum "Full".
    assert _spec_problems(keys, {"$ref": "#/definitions/StorageAccountListKeysResult"}, storage_spec) == [
        ".keys[0].permissions='FULL' not in ['Read', 'Full']",
        ".keys[1].permissions='FULL' not in ['Read', 'Full']",
    ]
    assert _spec_problems(group, {"$ref": "#/definitions/ResourceGroup"}, resources_spec) == []


def test_a_container_group_can_be_made_to_fail_with_a_message(azure_emulator, sdk):
    key = _account(sdk)
    azure_emulator.configure(group_failures={"emu-group": "Image pull failed: manifest unknown"})

    with pytest.raises(HttpResponseError, match="manifest unknown"):
        sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()

    group = sdk.containers.container_groups.get(RG, "emu-group")
    assert group.provisioning_state == "Failed"


def test_a_wrong_volume_key_hangs_the_deployment_with_mount_failure_events(azure_emulator, sdk):
    _account(sdk)

    poller = sdk.containers.container_groups.begin_create_or_update(
        RG, "emu-group", _group("emuacct1", "d3Jvbmc="), polling=False
    )
    poller.result()
    for _ in range(3):
        group = sdk.containers.container_groups.get(RG, "emu-group")

    assert group.provisioning_state == "Pending"
    events = group.containers[0].instance_view.events
    assert events[-1].type == "Warning" and "Failed to mount Azure File Volume" in events[-1].message
    assert events[-1].count >= 2


def test_public_ports_must_be_exposed_by_a_container(azure_emulator, sdk):
    key = _account(sdk)
    group = _group("emuacct1", key)
    group.ip_address.ports.append(aci.Port(port=8080))

    with pytest.raises(HttpResponseError) as error:
        sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", group)

    assert error.value.status_code == 400


def test_restart_answers_204_and_shows_only_later_with_a_new_start_time(azure_emulator, sdk):
    key = _account(sdk)
    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()
    before = sdk.containers.container_groups.get(RG, "emu-group").containers[0].instance_view
    time.sleep(1.1)  # start times have a resolution of one second

    sdk.containers.container_groups.begin_restart(RG, "emu-group").result()
    first = sdk.containers.container_groups.get(RG, "emu-group").containers[0].instance_view
    later = sdk.containers.container_groups.get(RG, "emu-group").containers[0].instance_view

    assert [r.status for r in azure_emulator.requests("arm") if r.path.endswith("/restart")] == [204]
    assert (first.restart_count, first.current_state.start_time) == (0, before.current_state.start_time)
    assert later.restart_count == 1 and later.current_state.start_time > before.current_state.start_time


def test_an_unchanged_put_restarts_the_containers(azure_emulator, sdk):
    key = _account(sdk)
    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()

    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()
    for _ in range(2):
        group = sdk.containers.container_groups.get(RG, "emu-group")

    assert group.containers[0].instance_view.restart_count == 1
    assert "Killing" in [e.name for e in group.containers[0].instance_view.events]


def test_a_failed_group_cannot_be_updated_only_deleted_and_created(azure_emulator, sdk):
    key = _account(sdk)
    azure_emulator.configure(group_failures={"emu-group": "Image pull failed: manifest unknown"})
    with pytest.raises(HttpResponseError):
        sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()

    with pytest.raises(HttpResponseError) as error:
        sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key))
    sdk.containers.container_groups.begin_delete(RG, "emu-group").result()
    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()

    assert error.value.status_code == 409 and "Failed state" in error.value.message
    assert sdk.containers.container_groups.get(RG, "emu-group").provisioning_state == "Succeeded"


def test_a_reuse_scope_gives_a_hashed_fqdn_and_a_taken_label_is_refused(azure_emulator, sdk):
    key = _account(sdk)
    azure_emulator.configure(taken_dns_labels={"emu-label"})
    unsecure = _group("emuacct1", key)
    with pytest.raises(HttpResponseError) as error:
        sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", unsecure)
    tenant = _group("emuacct1", key)
    tenant.ip_address.auto_generated_domain_name_label_scope = "TenantReuse"

    created = sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", tenant).result()
    with pytest.raises(HttpResponseError) as second:
        sdk.containers.container_groups.begin_create_or_update(RG, "other-group", tenant)

    assert error.value.error.code == second.value.error.code == "DnsNameLabelAlreadyTaken"
    label, hashed, region, *rest = created.ip_address.fqdn.split(".")
    assert (label, region, ".".join(rest)) == ("emu-label", LOCATION, "azurecontainer.io") and len(hashed) == 16


def test_anonymous_pulls_from_a_throttled_registry_fail_with_409_registry_error(azure_emulator, sdk):
    key = _account(sdk)
    azure_emulator.configure(throttled_registries={"docker.io"})

    with pytest.raises(HttpResponseError) as error:
        sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key))
    from_registry = _group("emuacct1", key)
    from_registry.containers[0].image = "portalimages.azurecr.io/library/caddy@sha256:" + "a" * 64
    identity = (
        f"/subscriptions/{azure_emulator.subscription_id}/resourceGroups/{RG}"
        "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull"
    )
    from_registry.identity = aci.ContainerGroupIdentity(
        type="UserAssigned", user_assigned_identities={identity: aci.UserAssignedIdentities()}
    )
    from_registry.image_registry_credentials = [
        aci.ImageRegistryCredential(server="portalimages.azurecr.io", identity=identity)
    ]
    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", from_registry).result()

    assert (error.value.status_code, error.value.error.code) == (409, "RegistryErrorResponse")
    assert "index.docker.io" in error.value.message


@pytest.mark.skipif(not SPECS.exists(), reason="the published REST specs are not on this machine")
def test_container_logs_answer_the_tail_and_crash_loops_keep_provisioning_succeeded(azure_emulator, sdk):
    key = _account(sdk)
    azure_emulator.configure(crash_loops={"web": "Error: loading config: open /config/Caddyfile: no such file"})
    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()

    for _ in range(3):
        group = sdk.containers.container_groups.get(RG, "emu-group")
    logs = sdk.containers.containers.list_logs(RG, "emu-group", "web", tail=1)
    raw = _arm_get(
        azure_emulator,
        sdk,
        "/providers/Microsoft.ContainerInstance/containerGroups/emu-group/containers/web/logs?api-version=2023-05-01",
    )

    view = group.containers[0].instance_view
    assert group.provisioning_state == "Succeeded" and view.current_state.state == "Waiting"
    assert view.restart_count >= 2
    assert logs.content == "Error: loading config: open /config/Caddyfile: no such file\n"
    assert not _spec_problems(raw, _load(ACI_SPEC)["definitions"]["Logs"], ACI_SPEC)


def test_an_unregistered_provider_answers_missing_subscription_registration(azure_emulator, sdk):
    _account(sdk)
    azure_emulator.configure(unregistered_providers={"Microsoft.ContainerInstance"})

    with pytest.raises(HttpResponseError) as error:
        sdk.containers.container_groups.get(RG, "emu-group")

    assert (error.value.status_code, error.value.error.code) == (409, "MissingSubscriptionRegistration")
    assert "'Microsoft.ContainerInstance'" in error.value.message


def test_file_shares_follow_the_sku_rules_and_can_be_patched(azure_emulator, sdk):
    def account(name: str, sku: str, kind: str) -> None:
        sdk.storage.storage_accounts.begin_create(
            RG, name, StorageAccountCreateParameters(sku=Sku(name=sku), kind=kind, location=LOCATION)
        ).result()

    account("premiumv2", "Premium_LRS", "StorageV2")
    account("premiumfs", "Premium_LRS", "FileStorage")
    account("provisionedv2", "StandardV2_LRS", "FileStorage")
    with pytest.raises(HttpResponseError, match="needs the account kind 'FileStorage'"):
        account("wrongv2", "PremiumV2_LRS", "StorageV2")
    with pytest.raises(HttpResponseError, match="File is not supported"):
        sdk.storage.file_shares.create(RG, "premiumv2", "data", FileShare(share_quota=100))
    with pytest.raises(HttpResponseError, match="between 100 and 102400"):
        sdk.storage.file_shares.create(RG, "premiumfs", "data", FileShare(share_quota=5))
    sdk.storage.file_shares.create(RG, "premiumfs", "data", FileShare(share_quota=100))
    sdk.storage.file_shares.create(RG, "provisionedv2", "data", FileShare(share_quota=32))

    updated = sdk.storage.file_shares.update(RG, "premiumfs", "data", FileShare(share_quota=200))
    with pytest.raises(HttpResponseError, match="between 100 and 102400"):
        sdk.storage.file_shares.update(RG, "premiumfs", "data", FileShare(share_quota=50))

    assert updated.share_quota == 200
    assert [r.method for r in azure_emulator.requests("arm") if r.path.endswith("/shares/data")][-2:] == [
        "PATCH",
        "PATCH",
    ]


def test_deleting_twice_is_fine_and_leaves_nothing(azure_emulator, sdk):
    key = _account(sdk)
    sdk.containers.container_groups.begin_create_or_update(RG, "emu-group", _group("emuacct1", key)).result()

    for _ in range(2):
        sdk.containers.container_groups.begin_delete(RG, "emu-group").result()
        sdk.storage.storage_accounts.delete(RG, "emuacct1")

    with pytest.raises(ResourceNotFoundError):
        sdk.containers.container_groups.get(RG, "emu-group")
    assert azure_emulator.snapshot()["storage_accounts"] == {}
    assert azure_emulator.snapshot()["container_groups"] == {}


@pytest.mark.e2e
def test_a_50_mb_file_written_to_a_share_reads_back_with_the_same_sha256(azure_emulator, sdk):
    key = _account(sdk)
    share = _share_service(azure_emulator, "emuacct1", key).get_share_client("data")
    share.create_directory("big")
    data = os.urandom(50 * 1024 * 1024)
    file_client = share.get_file_client("big/blob.bin")

    file_client.upload_file(data, max_concurrency=4)
    back = file_client.download_file(max_concurrency=4).readall()

    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
    ranged_puts = [r for r in azure_emulator.requests("file") if "comp=range" in r.query]
    assert len(ranged_puts) == 13  # 4 MiB ranges
    assert any(r.status == 206 for r in azure_emulator.requests("file"))
    assert file_client.get_file_properties().size == len(data)


def test_file_listing_rename_and_delete_follow_the_rest_api(azure_emulator, sdk):
    key = _account(sdk)
    share = _share_service(azure_emulator, "emuacct1", key).get_share_client("data")
    share.create_directory("pkgs")
    share.create_directory("pkgs/sub")
    share.get_file_client("pkgs/a.whl").upload_file(b"hello wheel")
    share.get_file_client("pkgs/sub/b.tar.gz").upload_file(b"")
    share.get_file_client("pkgs/tmp").upload_file(b"new")

    share.get_file_client("pkgs/tmp").rename_file("pkgs/a.whl", overwrite=True)
    entries = {e["name"]: e for e in share.list_directories_and_files("pkgs", include=["timestamps"])}
    share.get_file_client("pkgs/sub/b.tar.gz").delete_file()

    assert set(entries) == {"a.whl", "sub"}
    assert entries["sub"]["is_directory"] and entries["a.whl"]["size"] == 3
    assert entries["a.whl"]["last_modified"] is not None
    assert share.get_file_client("pkgs/a.whl").download_file().readall() == b"new"
    assert list(share.list_directories_and_files("pkgs/sub")) == []
    with pytest.raises(ResourceNotFoundError):
        share.get_file_client("pkgs/missing").get_file_properties()


def test_file_requests_signed_with_another_key_are_refused(azure_emulator, sdk):
    _account(sdk)
    intruder = _share_service(azure_emulator, "emuacct1", "aW50cnVkZXIta2V5LW5vdC1pc3N1ZWQ=").get_share_client("data")

    with pytest.raises(HttpResponseError) as error:
        intruder.create_directory("nope")

    assert error.value.status_code == 403
    assert error.value.error_code == "AuthenticationFailed"


def test_throttling_with_retry_after_is_retried_by_the_sdk(azure_emulator, sdk):
    fault = azure_emulator.inject("PUT", "/resourcegroups/[^/]+$", status=429, retry_after=1, times=2)
    started = time.monotonic()

    sdk.resources.resource_groups.create_or_update("rg-throttled", {"location": LOCATION})

    assert fault.hits == 2
    assert time.monotonic() - started >= 2  # Retry-After honoured each time
    assert [r.status for r in azure_emulator.requests("arm") if r.path.endswith("rg-throttled")] == [429, 429, 201]


def test_reset_connections_and_500s_are_retried_by_the_sdk(azure_emulator, sdk):
    azure_emulator.inject("GET", "/resourcegroups/rg-emulator$", drop=True, times=1)
    azure_emulator.inject("GET", "/resourcegroups/rg-emulator$", status=500, times=1)

    group = sdk.resources.resource_groups.get(RG)

    assert group.name == RG
    assert [r.status for r in azure_emulator.requests("arm") if r.method == "GET"] == [0, 500, 200]


def test_a_delayed_answer_still_carries_out_the_request(azure_emulator, sdk):
    azure_emulator.inject("PUT", "/resourcegroups/rg-slow$", delay=0.5)
    started = time.monotonic()

    sdk.resources.resource_groups.create_or_update("rg-slow", {"location": LOCATION})

    assert time.monotonic() - started >= 0.5
    assert "00000000-0000-4000-8000-000000005ab5/rg-slow" in azure_emulator.snapshot()["resource_groups"]


def test_authorization_failures_carry_the_azure_message(azure_emulator, sdk):
    azure_emulator.configure(denied_actions={"Microsoft.Storage/storageAccounts/write"})

    with pytest.raises(HttpResponseError) as error:
        sdk.storage.storage_accounts.begin_create(
            RG,
            "emuacct3",
            StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOCATION),
        )

    assert error.value.status_code == 403
    assert "does not have authorization to perform action 'Microsoft.Storage/storageAccounts/write'" in str(error.value)


@pytest.mark.e2e
def test_standalone_emulator_serves_a_control_api_for_faults_and_the_request_log(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.azure_emulator", "--port", "0", "--cert-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        first = process.stdout.readline()
        url = first.split(" on ")[1].split()[0]
        ca = str(tmp_path / "ca.pem")
        fault = requests.post(
            f"{url}/_emulator/faults", json={"method": "GET", "path": "/x$", "status": 503}, verify=ca, timeout=10
        )
        answered = requests.get(f"{url}/acct/x", verify=ca, timeout=10)
        log = requests.get(f"{url}/_emulator/requests", verify=ca, timeout=10).json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)

    assert fault.status_code == 201
    assert answered.status_code == 503 and answered.headers["x-ms-error-code"] == "ServerBusy"
    assert [(r["method"], r["path"], r["status"]) for r in log] == [("GET", "/acct/x", 503)]
