"""Azure as it really behaves (issue 10), against the emulator enforcing the same rules: pulls
from a registry, DNS labels with reuse protection, never re-sending a healthy group, restarts
that show late, starts that hang, unregistered providers and missing roles, storage SKUs."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from devtools.azure_emulator.state import new_key
from provisioning import checks, services
from provisioning.azure_settings import azure_setting_problems
from provisioning.cost import size_resources
from provisioning.drivers.azure_runtime import dns_label
from provisioning.drivers.backend import get_runtime
from provisioning.drivers.base import DriverError
from provisioning.models import PrivateIndex
from tests.azure_fixtures import group_definition, index_spec_for, pinned, run_steps

REGISTRY = "portalimages.azurecr.io"


def _group(emulator, spec):
    names = spec.placement.resources
    key = (emulator.subscription_id.lower(), names["resource_group"].lower(), names["container_group"].lower())
    return emulator.state.container_groups[key]


def _group_writes(emulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emulator.requests("arm") if "/containergroups/" in r.path.lower()]


# --- 1. images: pinned by digest, pulled from a registry


def test_unpinned_images_are_refused_at_startup_and_before_any_azure_request(azure_emulator, settings, driver):
    settings.CADDY_IMAGE = "docker.io/library/caddy:latest"

    with pytest.raises(SystemCheckError, match=r"CADDY_IMAGE .* is not pinned by digest"):
        call_command("check")
    with pytest.raises(DriverError) as error:
        driver.reserve(index_id=1, name="team-index", previous=None)

    assert error.value.permanent and "@sha256:<digest>" in error.value.message
    assert azure_emulator.requests("arm") == []


def test_settings_azure_would_refuse_are_named_with_their_fix(azure_emulator, settings):
    settings.AZURE_REGISTRY_SERVER = REGISTRY
    settings.AZURE_STORAGE_SKU = "Premium_XYZ"
    settings.AZURE_DNS_LABEL_SCOPE = "Everyone"

    problems = " ".join(f"{problem} {fix}" for problem, fix in azure_setting_problems())

    assert f"is not in the registry AZURE_REGISTRY_SERVER='{REGISTRY}'" in problems and "az acr import" in problems
    assert "AZURE_REGISTRY_SERVER is set without credentials" in problems
    assert "holds no Azure file shares" in problems and "AZURE_DNS_LABEL_SCOPE 'Everyone' is unknown" in problems


def test_images_come_from_the_registry_with_the_managed_identity_while_docker_hub_throttles(
    azure_emulator, settings, driver
):
    identity = (
        f"/subscriptions/{azure_emulator.subscription_id}/resourceGroups/identities"
        "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/index-pull"
    )
    settings.AZURE_REGISTRY_SERVER, settings.AZURE_REGISTRY_IDENTITY = REGISTRY, identity
    settings.CADDY_IMAGE = pinned(f"{REGISTRY}/library/caddy")
    settings.PYPISERVER_IMAGE = pinned(f"{REGISTRY}/pypiserver/pypiserver")
    azure_emulator.configure(throttled_registries={"docker.io"})
    spec = index_spec_for(driver)

    run_steps(driver.deploy_steps(spec))

    sent = group_definition(azure_emulator, spec)
    assert sent["imageRegistryCredentials"] == [{"server": REGISTRY, "identity": identity}]
    assert _group(azure_emulator, spec).identity == {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}
    assert {c["properties"]["image"].split("/")[0] for c in sent["containers"]} == {REGISTRY}
    assert driver.status(spec).is_running


def test_a_registry_user_and_its_secret_setting_are_sent_and_never_shown_back(azure_emulator, settings, driver):
    settings.AZURE_REGISTRY_SERVER, settings.AZURE_REGISTRY_USERNAME = REGISTRY, "index-puller"
    settings.AZURE_REGISTRY_PASSWORD = "registry-token-value"
    settings.CADDY_IMAGE = pinned(f"{REGISTRY}/library/caddy")
    settings.PYPISERVER_IMAGE = pinned(f"{REGISTRY}/pypiserver/pypiserver")
    spec = index_spec_for(driver)

    run_steps(driver.deploy_steps(spec))

    sent = group_definition(azure_emulator, spec)["imageRegistryCredentials"]
    assert sent == [{"server": REGISTRY, "username": "index-puller", "password": "registry-token-value"}]
    assert "registry-token-value" not in str(azure_emulator.snapshot())


def test_a_throttled_anonymous_pull_fails_retryably_and_names_the_registry_fix(azure_emulator, driver, spec):
    azure_emulator.configure(throttled_registries={"docker.io"})

    with pytest.raises(DriverError) as error:
        run_steps(driver.deploy_steps(spec))
    azure_emulator.configure(throttled_registries=set())
    run_steps(driver.deploy_steps(spec))

    assert not error.value.permanent
    assert "RegistryErrorResponse" in error.value.message and "index.docker.io" in error.value.message
    assert "AZURE_REGISTRY_SERVER" in error.value.message
    assert driver.status(spec).is_running


# --- 2. DNS name labels


def test_the_group_asks_for_tenant_reuse_and_the_host_is_the_fqdn_azure_answered(azure_emulator, driver, provisioned):
    sent = group_definition(azure_emulator, provisioned)
    fqdn = _group(azure_emulator, provisioned).fqdn

    assert sent["ipAddress"]["autoGeneratedDomainNameLabelScope"] == "TenantReuse"
    assert driver.settled_placement(provisioned).hostname == fqdn != provisioned.placement.hostname
    label, hashed, region, *_ = fqdn.split(".")
    assert (label, region) == (provisioned.placement.resources["dns_label"], "westeurope") and hashed


@pytest.mark.django_db
def test_a_taken_label_fails_clearly_and_retry_takes_a_new_one(azure_emulator, settings, team, lead, lead_client):
    settings.AZURE_DNS_LABEL_SCOPE = "Unsecure"
    index = PrivateIndex.objects.create(name="azure-index", team=team, requested_by=lead)
    first = dns_label(index.pk, index.name)
    azure_emulator.configure(taken_dns_labels={first})

    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    second = index.deployment["resources"]["dns_label"]
    page = lead_client.get(index.get_absolute_url()).content.decode()
    services.index_retry(index=index, actor=lead)
    services.index_provision_perform(index.pk)

    assert second != first, index.error
    assert f"The DNS name label '{first}' is taken" in index.error and f"label '{second}'" in index.error
    assert "is taken in westeurope" in page
    index.refresh_from_db()
    assert index.state == "ready", index.error
    assert index.url == f"https://{second}.westeurope.azurecontainer.io/simple/"
    assert index.deployment["resources"]["container_group"] == first  # the resources keep their names


# --- 3. re-sending a container group


def test_retries_and_revivals_never_resend_a_healthy_group(azure_emulator, driver, provisioned):
    before = {c.name: c.restart_count for c in driver.status(provisioned).containers}
    azure_emulator.clear_log()

    run_steps(driver.deploy_steps(provisioned))
    revived = driver.ensure_running(provisioned)

    assert revived is False
    assert not [w for w in _group_writes(azure_emulator) if not w.startswith("GET")]
    assert {c.name: c.restart_count for c in driver.status(provisioned).containers} == before


def test_a_group_in_failed_state_is_deleted_and_created_again(azure_emulator, driver, provisioned):
    _group(azure_emulator, provisioned).failure = "Container caddy was OOM killed"
    azure_emulator.clear_log()

    revived = driver.ensure_running(provisioned)

    writes = [w.split()[0] for w in _group_writes(azure_emulator) if not w.startswith("GET")]
    assert revived is True and writes == ["DELETE", "PUT"]
    assert driver.status(provisioned).is_running


def test_a_changed_spec_updates_the_group_in_place(azure_emulator, settings, driver, provisioned):
    settings.CADDY_IMAGE = pinned("docker.io/library/caddy-next")
    azure_emulator.clear_log()

    run_steps(driver.deploy_steps(index_spec_for(driver)))

    assert [w.split()[0] for w in _group_writes(azure_emulator) if not w.startswith("GET")] == ["PUT"]
    assert _group(azure_emulator, provisioned).generation == 2


# --- 4. restarts show late


def test_restart_returns_only_once_azure_shows_the_containers_restarted(azure_emulator, driver, provisioned):
    azure_emulator.configure(restart_polls=3)
    before = dict(_group(azure_emulator, provisioned).restart_counts)

    driver.restart(provisioned)

    group = _group(azure_emulator, provisioned)
    assert not group.restart_pending
    assert group.restart_counts == {name: count + 1 for name, count in before.items()}


# --- 5. starts that hang: crash loops and mounts, with events and log tails


def test_a_crash_loop_fails_the_start_at_once_with_events_and_the_log_tail(azure_emulator, settings, driver, spec):
    settings.AZURE_STARTUP_TIMEOUT_SECONDS = 60.0
    azure_emulator.configure(crash_loops={"caddy": "Error: loading initial config: acme: rateLimited"})

    started = time.monotonic()
    with pytest.raises(DriverError) as error:
        run_steps(driver.deploy_steps(spec))

    assert time.monotonic() - started < 10
    message = error.value.message
    assert "caddy keeps crashing" in message and "Back-off restarting failed container caddy" in message
    assert "caddy log (last lines):" in message and "acme: rateLimited" in message


def test_a_volume_that_cannot_be_mounted_fails_the_start_with_the_mount_event(azure_emulator, settings, driver, spec):
    settings.AZURE_STARTUP_TIMEOUT_SECONDS = 60.0
    steps = driver.deploy_steps(spec)
    run_steps(steps[:4])  # the driver now holds the account key
    azure_emulator.state.account(spec.placement.resources["storage_account"]).keys = [new_key(), new_key()]

    started = time.monotonic()
    with pytest.raises(DriverError) as error:
        run_steps(steps[4:])

    assert time.monotonic() - started < 10
    assert "cannot start: Failed to mount Azure File Volume" in error.value.message


def test_a_start_that_never_finishes_fails_within_the_startup_timeout(azure_emulator, settings, driver, spec):
    settings.AZURE_STARTUP_TIMEOUT_SECONDS = 0.5
    azure_emulator.configure(group_polls=10**6)

    started = time.monotonic()
    with pytest.raises(DriverError) as error:
        run_steps(driver.deploy_steps(spec))

    assert time.monotonic() - started < 5
    assert "still starting after 0.5 s" in error.value.message and not error.value.permanent


@pytest.mark.django_db
def test_a_crash_loop_shows_its_log_on_the_index_page(azure_emulator, settings, team, lead, lead_client):
    settings.AZURE_STARTUP_TIMEOUT_SECONDS = 60.0
    azure_emulator.configure(crash_loops={"caddy": "Error: adapting config: unrecognized directive: reverse_prox"})
    index = PrivateIndex.objects.create(name="azure-index", team=team, requested_by=lead)

    services.index_provision_perform(index.pk)

    index.refresh_from_db()
    page = lead_client.get(index.get_absolute_url()).content.decode()
    assert index.state == "failed" and "unrecognized directive: reverse_prox" in index.error
    assert "unrecognized directive: reverse_prox" in page


@pytest.mark.django_db
def test_a_ready_index_gone_bad_shows_the_crash_loop_and_its_log_on_the_dashboard(
    azure_emulator, team, lead, portal_admin_client, monkeypatch
):
    # The certificate side of the check would resolve the index's public host name: no network
    # here, and test_certs covers it. The container side is what this test is about.
    monkeypatch.setattr(checks, "inspect_fleet", lambda targets, **options: {})
    index = PrivateIndex.objects.create(name="azure-index", team=team, requested_by=lead)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    assert index.state == "ready", index.error
    azure_emulator.arm.crash_loop(index.deployment["resources"]["container_group"], "caddy", "panic: certmagic")
    spec = services.index_spec(index)
    for _ in range(3):  # the restarts pile up
        get_runtime().status(spec)

    check = checks.index_check(index=index)

    page = portal_admin_client.get(reverse("dashboard_index", args=[index.pk])).content.decode()
    assert check.container_state == "failed"
    assert "Crash loop: caddy" in check.last_event and "panic: certmagic" in check.last_event
    assert "panic: certmagic" in page


# --- 7. subscription setup and rights


def test_an_unregistered_provider_fails_permanently_naming_the_namespace_and_the_command(azure_emulator, driver, spec):
    azure_emulator.configure(unregistered_providers={"Microsoft.ContainerInstance"})

    with pytest.raises(DriverError) as error:
        run_steps(driver.deploy_steps(spec))

    assert error.value.permanent
    assert "az provider register --namespace Microsoft.ContainerInstance" in error.value.message
    assert len([r for r in azure_emulator.requests("arm") if r.status == 409]) == 1  # asked once, not retried


def test_a_missing_right_fails_permanently_naming_the_role_and_the_scope(azure_emulator, driver, spec):
    azure_emulator.configure(denied_actions={"Microsoft.Storage/storageAccounts/listkeys/action"})

    with pytest.raises(DriverError) as error:
        run_steps(driver.deploy_steps(spec))

    account = spec.placement.resources["storage_account"]
    assert error.value.permanent and "Storage Account Contributor" in error.value.message
    assert "az role assignment create" in error.value.message and f"storageAccounts/{account}" in error.value.message


# --- 8. storage SKUs


@pytest.mark.parametrize(
    ("sku", "kind", "minimum"),
    [("Premium_LRS", "FileStorage", 100), ("StandardV2_LRS", "FileStorage", 32), ("Standard_ZRS", "StorageV2", 1)],
)
def test_each_storage_sku_gets_its_account_kind_and_share_minimum(
    azure_emulator, settings, driver, spec, sku, kind, minimum
):
    settings.AZURE_STORAGE_SKU = sku

    run_steps(driver.deploy_steps(spec)[:3])

    account = azure_emulator.snapshot()["storage_accounts"][spec.placement.resources["storage_account"]]
    assert (account["sku"], account["kind"]) == (sku, kind)
    assert {n: s["quota_gb"] for n, s in account["shares"].items()} == {
        s.name: max(s.quota_gb, minimum) for s in spec.shares
    }


def test_a_share_that_answers_409_gets_its_quota_through_patch(azure_emulator, driver, spec):
    run_steps(driver.deploy_steps(spec)[:3])
    azure_emulator.inject("PUT", "/shares/", status=409, code="ShareAlreadyExists", times=None)
    bigger = index_spec_for(driver, size="medium")

    run_steps(driver.deploy_steps(bigger)[2:3])

    account = azure_emulator.snapshot()["storage_accounts"][spec.placement.resources["storage_account"]]
    assert account["shares"]["pypipackages"]["quota_gb"] == bigger.share("pypipackages").quota_gb
    assert [r.method for r in azure_emulator.requests("arm") if r.method == "PATCH"] == ["PATCH"] * len(spec.shares)


def test_the_cost_estimate_bills_premium_shares_at_their_minimum(settings):
    standard = size_resources("small")[2]
    settings.AZURE_STORAGE_SKU = "Premium_LRS"

    premium = size_resources("small")[2]

    assert standard == 1 + 1 + settings.INDEX_SIZES["small"]["quota_gb"]  # certs, config, packages
    assert premium == 3 * max(100, settings.INDEX_SIZES["small"]["quota_gb"])
