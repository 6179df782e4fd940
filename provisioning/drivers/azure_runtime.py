"""The Azure runtime: one storage account with three Azure File shares and one container group
(Caddy in front of the index server) per index, built with the Azure SDKs.

Every step is idempotent: storage PUTs are create-or-update with the same body; the container
group is read first and sent only when it differs (Azure restarts every container on an
unchanged PUT); files are only written when missing or different (through the Azure share
store); deletes of missing things succeed. The FQDN is Azure's (reuse-protected, hashed) and
recorded in the placement's resources, which the portal stores after each attempt
(`settled_placement`). Clients, keys and error mapping: `azure_clients`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance import models as aci
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import (
    FileShare,
    FileShareProperties,
    Sku,
    StorageAccountCreateParameters,
    StorageAccountPropertiesCreateParameters,
)
from django.conf import settings

from provisioning.azure_settings import azure_setting_problems, share_quota_gib, storage_kind
from provisioning.certs import inspect_certificate
from provisioning.drivers.azure_clients import AzureClients, azure_message, error_code, to_driver_error
from provisioning.drivers.azure_store import AzureShareStore
from provisioning.drivers.base import DriverError
from provisioning.drivers.runtime import (
    ContainerState,
    ContainerStatus,
    DeployStep,
    IndexRuntime,
    IndexStatus,
    RunState,
)
from provisioning.models import CertificateStatus
from provisioning.spec import (
    AZURE_HTTP_PORT,
    AZURE_HTTPS_PORT,
    CADDYFILE_PATH,
    SERVER_PORT,
    SHARE_CONFIG,
    ConfigFile,
    IndexSpec,
    Placement,
    index_caddyfile,
)

FQDN_SUFFIX = "azurecontainer.io"


def _short_hash(index_id: int | str, length: int) -> str:
    salt = settings.AZURE_NAME_SALT
    return hashlib.sha256(f"{salt}:{index_id}".encode()).hexdigest()[:length]


def storage_account_name(index_id: int, name: str) -> str:
    """3-24 lowercase letters and digits, unique across Azure: the index name's letters and
    digits plus 8 hex digits of a hash of the index id (and the portal's salt)."""
    letters = re.sub(r"[^a-z0-9]", "", name.lower())[:16]
    return f"{letters}{_short_hash(index_id, 8)}"[:24]


def dns_label(index_id: int, name: str, attempt: int = 0) -> str:
    """A DNS label (<= 63 characters) that is the host name's first part, unique per index;
    `attempt` > 0 gives another one, for when Azure says the label is taken."""
    stem = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:56].rstrip("-") or "index"
    if not stem[0].isalpha():  # ACI labels must start with a letter
        stem = f"i{stem}"[:56].rstrip("-")
    suffix = _short_hash(index_id if attempt == 0 else f"{index_id}:{attempt}", 6)
    return f"{stem}-{suffix}"


def _container_state(azure_state: str | None) -> ContainerState:
    """A container's current state as ACI reports it (Running, Waiting, Terminated); anything
    else, or none yet, counts as not started.
    https://learn.microsoft.com/en-us/rest/api/container-instances/container-groups/get#containerstate"""
    try:
        return ContainerState((azure_state or "").lower())
    except ValueError:
        return ContainerState.WAITING


def _memory_gb(value: float) -> float:
    # ACI takes memory in steps of 0.1 GB.
    return float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


class AzureRuntime(IndexRuntime):
    """Builds each index as Azure resources named from the index (see `reserve`)."""

    name = "azure"

    def __init__(self, clients: AzureClients, store: AzureShareStore) -> None:
        self.clients = clients
        self.store = store  # the configuration files and the Caddyfile are written through it

    # --- clients (shared with the store)
    @property
    def resources(self) -> ResourceManagementClient:
        return self.clients.resources

    @property
    def storage(self) -> StorageManagementClient:
        return self.clients.storage

    @property
    def containers(self) -> ContainerInstanceManagementClient:
        return self.clients.containers

    # --- names
    def reserve(self, *, index_id: int, name: str, previous: dict | None) -> Placement:
        """The resource names, all derived from the index, so a retry lands on the same resources.
        The host name is provisional: Azure decides the FQDN (a reuse scope adds a hash) and
        `settled_placement` reports it once the container group exists."""
        problems = azure_setting_problems()
        if problems:
            raise DriverError(" ".join(f"{problem} {fix}" for problem, fix in problems), permanent=True)
        if previous and (previous.get("resources") or {}).get("driver") == self.name:
            return Placement.from_dict(previous)
        location = settings.AZURE_LOCATION.lower().replace(" ", "")
        label = dns_label(index_id, name)
        if settings.AZURE_RESOURCE_GROUP_POLICY == "per-index":
            resource_group = f"{settings.AZURE_RESOURCE_GROUP}-{label}"[:90]
        elif settings.AZURE_RESOURCE_GROUP_POLICY == "shared":
            resource_group = settings.AZURE_RESOURCE_GROUP
        else:
            raise DriverError(
                "AZURE_RESOURCE_GROUP_POLICY must be 'shared' or 'per-index', not "
                f"{settings.AZURE_RESOURCE_GROUP_POLICY!r}.",
                permanent=True,
            )
        return Placement(
            hostname=f"{label}.{location}.{FQDN_SUFFIX}",
            https_port=AZURE_HTTPS_PORT,
            http_port=AZURE_HTTP_PORT,
            server_port=SERVER_PORT,
            tls="acme",
            resources={
                "driver": self.name,
                "subscription": settings.AZURE_SUBSCRIPTION_ID,
                "location": location,
                "resource_group": resource_group,
                "resource_group_policy": settings.AZURE_RESOURCE_GROUP_POLICY,
                "storage_account": storage_account_name(index_id, name),
                "container_group": label,
                "dns_label": label,
                "dns_label_attempt": 0,
                "dns_label_scope": settings.AZURE_DNS_LABEL_SCOPE,
                "fqdn": "",
            },
        )

    def settled_placement(self, spec: IndexSpec) -> Placement:
        """The placement with the FQDN Azure gave the container group (read from its answer)."""
        fqdn = spec.placement.resources.get("fqdn") or spec.placement.hostname
        return dataclasses.replace(spec.placement, hostname=fqdn, resources=dict(spec.placement.resources))

    @staticmethod
    def _names(spec: IndexSpec) -> dict[str, Any]:
        return spec.placement.resources

    # --- steps
    def deploy_steps(self, spec: IndexSpec) -> list[DeployStep]:
        names = self._names(spec)
        # Each step reads what it needs from Azure or from the placement, never from another
        # step, so a retry can resume at any of them: the FQDN Azure gave the group is recorded
        # in the placement's resources (stored after each attempt), and the wait reads the group
        # with a GET, whose instance view has each container's state, restart count and events:
        # https://learn.microsoft.com/en-us/rest/api/container-instances/container-groups/get
        return [
            DeployStep(
                "resource_group", f"Resource group {names['resource_group']}", lambda: self._ensure_resource_group(spec)
            ),
            DeployStep(
                "storage_account",
                f"Storage account {names['storage_account']}",
                lambda: self._ensure_storage_account(spec),
            ),
            DeployStep(
                "file_shares",
                "File shares " + ", ".join(s.name for s in spec.shares),
                lambda: self._ensure_shares(spec),
            ),
            DeployStep("config", "Write the index server configuration", lambda: self._write_config(spec)),
            # Rechecked on every attempt (a GET; it is only sent again when it differs), so a
            # retry recreates a group that failed after it was created.
            DeployStep(
                "container_group",
                f"Container group {names['container_group']}",
                lambda: self._ensure_container_group(spec),
                rerun=True,
            ),
            DeployStep(
                "caddyfile",
                "Write the Caddy configuration for the host name Azure gave",
                lambda: self._write_caddyfile(spec),
            ),
            # A live condition: checked again on every attempt (see DeployStep).
            DeployStep(
                "running",
                "Wait until the containers run",
                lambda: self._wait_running(spec),
                rerun=True,
            ),
            # Ready means clients can connect: Caddy holds a certificate from the ACME CA.
            DeployStep(
                "certificate", "Wait for the HTTPS certificate", lambda: self._wait_certificate(spec), rerun=True
            ),
        ]

    def teardown_steps(self, spec: IndexSpec) -> list[DeployStep]:
        names = self._names(spec)
        steps = [
            DeployStep(
                "delete_container_group",
                f"Delete container group {names['container_group']}",
                lambda: self._delete_container_group(spec),
            ),
            DeployStep(
                "delete_storage_account",
                f"Delete storage account {names['storage_account']}",
                lambda: self._delete_storage_account(spec),
            ),
        ]
        if names.get("resource_group_policy") == "per-index":
            steps.append(
                DeployStep(
                    "delete_resource_group",
                    f"Delete resource group {names['resource_group']}",
                    lambda: self._delete_resource_group(spec),
                )
            )
        steps.append(DeployStep("confirm_deleted", "Confirm nothing is left", lambda: self._confirm_deleted(spec)))
        return steps

    def _ensure_resource_group(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        rg = names["resource_group"]
        doing = f"Creating resource group {rg}"
        if names.get("resource_group_policy") != "per-index":
            # A shared group may be pre-created by an operator who grants rights on it only.
            try:
                self.resources.resource_groups.get(rg)
                return
            except ResourceNotFoundError:
                pass
            except AzureError as exc:
                raise to_driver_error(exc, f"Reading resource group {rg}") from exc
            tags = {"managed-by": "private-index-portal"}
        else:
            tags = dict(spec.tags)
        self.clients.call(
            doing, self.resources.resource_groups.create_or_update, rg, {"location": names["location"], "tags": tags}
        )

    def _ensure_storage_account(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        account = names["storage_account"]
        sku = settings.AZURE_STORAGE_SKU
        parameters = StorageAccountCreateParameters(
            sku=Sku(name=sku),
            # Premium and provisioned v2 shares exist only in FileStorage accounts.
            kind=storage_kind(sku),
            location=names["location"],
            tags=dict(spec.tags),
            properties=StorageAccountPropertiesCreateParameters(
                enable_https_traffic_only=True,
                minimum_tls_version="TLS1_2",
                allow_blob_public_access=False,
            ),
        )
        doing = f"Creating storage account {account}"
        poller = self.clients.call(
            doing, self.storage.storage_accounts.begin_create, names["resource_group"], account, parameters
        )
        result = self.clients.wait(doing, poller)
        state = str(getattr(result, "provisioning_state", "") or "")
        if state and not state.lower().endswith("succeeded"):
            raise DriverError(f"{doing}: the account is {state}.", permanent=False)

    def _ensure_shares(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        for share in spec.shares:
            doing = f"Creating file share {share.name}"
            quota = share_quota_gib(share.quota_gb)
            try:
                self.storage.file_shares.create(
                    names["resource_group"],
                    names["storage_account"],
                    share.name,
                    FileShare(file_share_properties=FileShareProperties(share_quota=quota, enabled_protocols="SMB")),
                )
            except ResourceExistsError as exc:
                if error_code(exc) == "MissingSubscriptionRegistration":
                    raise to_driver_error(exc, doing) from exc
                # Some API versions answer 409 instead of updating: set the quota (PATCH) instead.
                self.clients.call(
                    doing,
                    self.storage.file_shares.update,
                    names["resource_group"],
                    names["storage_account"],
                    share.name,
                    FileShare(file_share_properties=FileShareProperties(share_quota=quota)),
                )
            except AzureError as exc:
                raise to_driver_error(exc, doing) from exc

    def _write_config(self, spec: IndexSpec) -> None:
        """The spec's configuration files, so the index server starts with the group; the
        Caddyfile only once Azure has said the FQDN (the `caddyfile` step writes it)."""
        files = [c for c in spec.config_files if c.path != CADDYFILE_PATH]
        if self._names(spec).get("fqdn"):
            files.append(ConfigFile(CADDYFILE_PATH, self._caddyfile(spec)))
        self.store.write_config(dataclasses.replace(spec, config_files=tuple(files)))

    def _caddyfile(self, spec: IndexSpec) -> bytes:
        return index_caddyfile(self.settled_placement(spec)).encode()

    def _write_caddyfile(self, spec: IndexSpec) -> None:
        """The Caddyfile for the FQDN Azure gave (recorded by the container group step, or read
        again). Caddy reads it when it starts, so a group that started without it (or with
        another host name) is restarted once, and only then."""
        if not self._names(spec).get("fqdn"):
            self._record_fqdn(spec, self._get_group(spec))
        if not self.store.write_if_changed(spec, SHARE_CONFIG, CADDYFILE_PATH, self._caddyfile(spec)):
            return
        group = self._get_group(spec)
        if group is None or str(group.provisioning_state or "").lower() == "failed":
            return  # recreated by the next attempt, and then it starts with this file
        if any(mark != (None, 0) for mark in self._start_marks(group).values()):
            self._restart_and_confirm(spec)  # a container started without the file

    def _record_fqdn(self, spec: IndexSpec, group: aci.ContainerGroup | None) -> None:
        fqdn = getattr(getattr(group, "ip_address", None), "fqdn", None)
        if not fqdn:
            raise DriverError(
                f"Container group {self._names(spec)['container_group']} has no FQDN in Azure's answer.",
                permanent=False,
            )
        self._names(spec)["fqdn"] = fqdn

    def container_group_model(self, spec: IndexSpec, account_key: str) -> aci.ContainerGroup:
        """The container group for `spec`: Caddy publishing 80/443 (nothing else is public) in
        front of the index server, each share mounted as an Azure File volume, images pulled from
        AZURE_REGISTRY_SERVER when set."""
        names = self._names(spec)
        volumes = [
            aci.Volume(
                name=share.name,
                azure_file=aci.AzureFileVolume(
                    share_name=share.name,
                    storage_account_name=names["storage_account"],
                    storage_account_key=account_key,
                ),
            )
            for share in spec.shares
        ]
        containers = [
            aci.Container(
                name=container.name,
                image=container.image,
                command=list(container.command),
                ports=[aci.ContainerPort(port=port, protocol="TCP") for port in container.ports] or None,
                environment_variables=[aci.EnvironmentVariable(name=k, value=v) for k, v in container.environment]
                or None,
                resources=aci.ResourceRequirements(
                    requests=aci.ResourceRequests(cpu=container.cpu, memory_in_gb=_memory_gb(container.memory_gb))
                ),
                volume_mounts=[
                    aci.VolumeMount(name=mount.share, mount_path=mount.mount_path, read_only=mount.read_only)
                    for mount in container.mounts
                ],
            )
            for container in spec.containers
        ]
        identity, credentials = self._registry_access()
        return aci.ContainerGroup(
            location=names["location"],
            tags=dict(spec.tags),
            identity=identity,
            containers=containers,
            image_registry_credentials=credentials,
            os_type="Linux",
            sku="Standard",
            restart_policy="Always",
            ip_address=aci.IpAddress(
                type="Public",
                ports=[aci.Port(port=port, protocol="TCP") for port in spec.public_ports],
                dns_name_label=names["dns_label"],
                # Reuse protection: a hashed FQDN nobody outside the scope can claim after a teardown.
                auto_generated_domain_name_label_scope=names.get("dns_label_scope") or "Unsecure",
            ),
            volumes=volumes,
        )

    @staticmethod
    def _registry_access() -> tuple[aci.ContainerGroupIdentity | None, list[aci.ImageRegistryCredential] | None]:
        """Pull access to AZURE_REGISTRY_SERVER: a user-assigned identity with AcrPull, or a user
        name and password. https://learn.microsoft.com/en-us/azure/container-instances/using-azure-container-registry-mi"""
        server = settings.AZURE_REGISTRY_SERVER
        if not server:
            return None, None
        identity_id = settings.AZURE_REGISTRY_IDENTITY
        if identity_id:
            identity = aci.ContainerGroupIdentity(
                type="UserAssigned", user_assigned_identities={identity_id: aci.UserAssignedIdentities()}
            )
            return identity, [aci.ImageRegistryCredential(server=server, identity=identity_id)]
        credential = aci.ImageRegistryCredential(
            server=server, username=settings.AZURE_REGISTRY_USERNAME, password=settings.AZURE_REGISTRY_PASSWORD
        )
        return None, [credential]

    @staticmethod
    def _fingerprint(group: aci.ContainerGroup) -> dict[str, Any]:
        """What the driver sets on a group, as Azure shows it back (keys and passwords are
        write-only, so they are not compared)."""
        ip = group.ip_address
        return {
            "containers": [
                (
                    c.name,
                    c.image,
                    tuple(c.command or ()),
                    tuple(sorted(p.port for p in c.ports or [])),
                    tuple(sorted((e.name, e.value or "") for e in c.environment_variables or [])),
                    float(c.resources.requests.cpu),
                    float(c.resources.requests.memory_in_gb),
                    tuple(sorted((m.name, m.mount_path, bool(m.read_only)) for m in c.volume_mounts or [])),
                )
                for c in group.containers or []
            ],
            "volumes": sorted(
                (v.name, v.azure_file.share_name, v.azure_file.storage_account_name)
                for v in group.volumes or []
                if v.azure_file
            ),
            "ports": sorted(p.port for p in ip.ports or []) if ip else [],
            "label": ip.dns_name_label if ip else None,
            "scope": (ip.auto_generated_domain_name_label_scope or "Unsecure") if ip else None,
            "registries": sorted(
                (r.server, r.identity or "", r.username or "") for r in group.image_registry_credentials or []
            ),
            "restart_policy": group.restart_policy,
        }

    def _ensure_container_group(self, spec: IndexSpec) -> aci.ContainerGroup:
        """Create the group, or update it when it differs from the spec. Never re-sent unchanged:
        an unchanged PUT restarts every container; a Failed group cannot be updated, only
        deleted and created again.
        https://learn.microsoft.com/en-us/azure/container-instances/container-instances-update"""
        names = self._names(spec)
        doing = f"Creating container group {names['container_group']}"
        wanted = self.container_group_model(spec, self.clients.account_key(spec))
        existing = self._get_group(spec)
        if existing is not None and str(existing.provisioning_state or "").lower() == "failed":
            self._delete_container_group(spec)
            existing = None
        if existing is not None and self._fingerprint(existing) == self._fingerprint(wanted):
            self._record_fqdn(spec, existing)
            return existing
        try:
            # No polling: the PUT's answer carries the FQDN, and `_wait_running` watches the start
            # within AZURE_STARTUP_TIMEOUT_SECONDS, reading events and logs, instead of the LRO.
            poller = self.containers.container_groups.begin_create_or_update(
                names["resource_group"], names["container_group"], wanted, polling=False
            )
            result = poller.result()
        except HttpResponseError as exc:
            if error_code(exc) == "DnsNameLabelAlreadyTaken":
                raise self._label_taken(spec, exc) from exc
            raise to_driver_error(exc, doing) from exc
        except AzureError as exc:
            raise to_driver_error(exc, doing) from exc
        self._record_fqdn(spec, result)
        return result

    def _label_taken(self, spec: IndexSpec, exc: HttpResponseError) -> DriverError:
        """Someone holds the label: the placement moves to the next one, which Retry uses."""
        names = self._names(spec)
        taken = names["dns_label"]
        names["dns_label_attempt"] = int(names.get("dns_label_attempt") or 0) + 1
        names["dns_label"] = dns_label(spec.index_id, spec.name, names["dns_label_attempt"])
        names["fqdn"] = ""
        return DriverError(
            f"The DNS name label {taken!r} is taken in {names['location']} ({azure_message(exc)}). "
            f"Retry creates the container group with the label {names['dns_label']!r}.",
            permanent=True,
        )

    def _get_group(self, spec: IndexSpec) -> aci.ContainerGroup | None:
        names = self._names(spec)
        try:
            return self.containers.container_groups.get(names["resource_group"], names["container_group"])
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise to_driver_error(exc, f"Reading container group {names['container_group']}") from exc

    @staticmethod
    def _start_marks(group: aci.ContainerGroup | None) -> dict[str, tuple[Any, int]]:
        """Each container's start time and restart count: a restart changes one of them."""
        marks: dict[str, tuple[Any, int]] = {}
        for container in (group.containers if group else None) or []:
            view = container.instance_view
            start = getattr(view.current_state, "start_time", None) if view and view.current_state else None
            marks[container.name] = (start, (view.restart_count or 0) if view else 0)
        return marks

    @staticmethod
    def _counters(group: aci.ContainerGroup) -> dict[tuple[str, ...], int]:
        """Restart counts and warning event counts per container: a wait only judges what rose
        while it waited, not a warning or a restart from long ago."""
        counters: dict[tuple[str, ...], int] = {}
        for container in group.containers or []:
            view = container.instance_view
            counters[("restarts", container.name)] = (view.restart_count or 0) if view else 0
            for event in (view.events if view else None) or []:
                if (event.type or "").lower() == "warning":
                    counters[("warning", container.name, event.name or "", event.message or "")] = event.count or 1
        return counters

    def _stuck_reason(self, group: aci.ContainerGroup, baseline: dict[tuple[str, ...], int]) -> str:
        """Why a group that is not running will not get there by waiting: a failed deployment,
        a volume that cannot be mounted or an image that cannot be pulled (warning events that
        keep coming), a container that keeps crashing (restarts that keep coming)."""
        if str(group.provisioning_state or "").lower() == "failed":
            return "the deployment failed"
        for key, count in self._counters(group).items():
            rise = count - baseline.get(key, 0)
            if (
                key[0] == "warning"
                and rise > 0
                and any(word in f"{key[2]} {key[3]}".lower() for word in ("mount", "pull"))
            ):
                return f"{key[1]} cannot start: {key[3]}"
            if key[0] == "restarts" and rise >= settings.AZURE_CRASH_LOOP_RESTARTS:
                return f"{key[1]} keeps crashing ({rise} restarts while waiting)"
        return ""

    def _wait_running(
        self,
        spec: IndexSpec,
        group: aci.ContainerGroup | None = None,
        *,
        changed_from: dict[str, tuple[Any, int]] | None = None,
    ) -> None:
        """Until every container runs (and, with `changed_from`, has restarted since those
        marks). A failure, a crash loop or a failed mount ends the wait at once, and
        AZURE_STARTUP_TIMEOUT_SECONDS at the latest, with the events and each container's log tail.
        `group`, when given, is a state just read, used for the first look."""
        names = self._names(spec)
        timeout = settings.AZURE_STARTUP_TIMEOUT_SECONDS
        deadline = time.monotonic() + timeout
        baseline: dict[tuple[str, ...], int] | None = None
        while True:
            group = group or self._get_group(spec)
            if group is None:
                raise DriverError(f"Container group {names['container_group']} does not exist.", permanent=False)
            status = self._status_of(group)
            marks = self._start_marks(group)
            if baseline is None:
                # A group just created counts from zero; one that ran before, from what it shows now.
                baseline = (
                    {}
                    if changed_from is None and not any(m != (None, 0) for m in marks.values())
                    else (self._counters(group))
                )
            restarted = changed_from is None or any(marks.get(n) != mark for n, mark in changed_from.items())
            if status.is_running and restarted:
                return
            reason = self._stuck_reason(group, baseline)
            if reason or time.monotonic() > deadline:
                reason = reason or (
                    f"still {status.state} after {timeout:g} s" if restarted else f"no restart seen after {timeout:g} s"
                )
                raise DriverError(
                    f"Container group {names['container_group']}: {reason}. {status.detail}{self._log_tails(spec)}",
                    permanent=str(group.provisioning_state or "").lower() == "failed",
                )
            group = None
            time.sleep(settings.AZURE_POLLING_INTERVAL_SECONDS)

    def _log_tails(self, spec: IndexSpec) -> str:
        """The last AZURE_LOG_TAIL_LINES of each container's log (the ACI logs API).
        https://learn.microsoft.com/en-us/azure/container-instances/container-instances-get-logs"""
        return "".join(
            f"\n{c.name} log (last lines):\n{self.container_log_tail(spec, c.name, settings.AZURE_LOG_TAIL_LINES)}"
            for c in spec.containers
        )

    def _delete_container_group(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        doing = f"Deleting container group {names['container_group']}"
        try:
            poller = self.containers.container_groups.begin_delete(names["resource_group"], names["container_group"])
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise to_driver_error(exc, doing) from exc
        self.clients.wait(doing, poller)

    def _delete_storage_account(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        account = names["storage_account"]
        self.clients.forget_key(spec)
        try:
            self.storage.storage_accounts.delete(names["resource_group"], account)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise to_driver_error(exc, f"Deleting storage account {account}") from exc

    def _delete_resource_group(self, spec: IndexSpec) -> None:
        rg = self._names(spec)["resource_group"]
        try:
            poller = self.resources.resource_groups.begin_delete(rg)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise to_driver_error(exc, f"Deleting resource group {rg}") from exc
        self.clients.wait(f"Deleting resource group {rg}", poller)

    def _confirm_deleted(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        left = []
        if self._get_group(spec) is not None:
            left.append(f"container group {names['container_group']}")
        try:
            self.storage.storage_accounts.get_properties(names["resource_group"], names["storage_account"])
            left.append(f"storage account {names['storage_account']}")
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise to_driver_error(exc, "Checking the storage account is gone") from exc
        if names.get("resource_group_policy") == "per-index":
            try:
                self.resources.resource_groups.get(names["resource_group"])
                left.append(f"resource group {names['resource_group']}")
            except ResourceNotFoundError:
                pass
            except AzureError as exc:
                raise to_driver_error(exc, "Checking the resource group is gone") from exc
        if left:
            raise DriverError("Still present in Azure: " + ", ".join(left) + ".", permanent=False)

    # --- certificates
    def ca_certificate_pem(self, spec: IndexSpec) -> str | None:
        """The ACME issuer roots clients must trust (ACME_ISSUER_ROOTS), or None for Let's
        Encrypt production, which every client trusts already."""
        roots = settings.ACME_ISSUER_ROOTS
        if not roots:
            return None
        try:
            with open(roots, encoding="ascii") as handle:
                return handle.read()
        except OSError as exc:
            raise DriverError(f"Cannot read ACME_ISSUER_ROOTS {roots}: {exc.strerror}.", permanent=True) from exc

    def _wait_certificate(self, spec: IndexSpec) -> None:
        """Until the FQDN serves a certificate that chains to the ACME issuer's roots and names
        the host; on timeout a retryable failure with the end of Caddy's log."""
        roots = self.ca_certificate_pem(spec)
        host = self.settled_placement(spec).hostname  # the FQDN Azure gave
        deadline = time.monotonic() + settings.ACME_CERTIFICATE_TIMEOUT_SECONDS
        while True:
            result = inspect_certificate(
                host, spec.placement.https_port, ca_pem=roots, timeout=settings.CERT_CHECK_TIMEOUT_SECONDS
            )
            if result.status in (CertificateStatus.VALID, CertificateStatus.EXPIRING):
                return
            if time.monotonic() > deadline:
                raise DriverError(
                    f"No valid certificate for {host} after "
                    f"{settings.ACME_CERTIFICATE_TIMEOUT_SECONDS:g} s ({result.reason}) from "
                    f"{settings.ACME_DIRECTORY_URL}. Caddy's log ends with:\n{self.container_log_tail(spec, 'caddy')}",
                    permanent=False,
                )
            time.sleep(min(2.0, max(0.2, settings.AZURE_POLLING_INTERVAL_SECONDS)))

    def container_log_tail(self, spec: IndexSpec, container: str, lines: int = 20) -> str:
        """The last `lines` lines a container wrote (the ACI logs API), or why they cannot be read."""
        names = self._names(spec)
        try:
            logs = self.containers.containers.list_logs(
                names["resource_group"], names["container_group"], container, tail=lines
            )
        except AzureError as exc:
            return f"(the log cannot be read: {azure_message(exc)})"
        return (logs.content or "").rstrip() or "(empty)"

    # --- running indexes
    def restart(self, spec: IndexSpec) -> None:
        """Restart every container of the group (Caddy keeps its certificates on caddy-certs)
        and return once they all run again and the FQDN serves a valid certificate. Raises DriverError."""
        self._restart_and_confirm(spec)
        self._wait_certificate(spec)  # the index answers HTTPS again, with its certificate

    def _restart_and_confirm(self, spec: IndexSpec) -> None:
        """POST restart, then wait for evidence it happened: a restart is asynchronous and the
        first GETs can still show the containers from before (new start times or restart counts
        are the evidence)."""
        before = self._start_marks(self._get_group(spec))
        self._group_action(spec, "Restarting", self.containers.container_groups.begin_restart)
        self._wait_running(spec, changed_from=before)

    def _group_action(self, spec: IndexSpec, doing: str, begin: Callable[..., LROPoller[Any]]) -> None:
        """POST a start or restart without polling the operation: the caller watches the group."""
        names = self._names(spec)
        self.clients.call(
            f"{doing} container group {names['container_group']}",
            lambda: begin(names["resource_group"], names["container_group"], polling=False).result(),
        )

    def ensure_running(self, spec: IndexSpec) -> bool:
        """Recreate a missing or Failed container group, start a stopped one; True when it had
        to. A healthy group is left alone (a PUT would restart it); a crash loop is reported."""
        group = self._get_group(spec)
        status = self._status_of(group)
        if status.is_running or status.state == RunState.STARTING:
            return False
        if group is not None and status.state == RunState.FAILED and str(group.provisioning_state).lower() != "failed":
            raise DriverError(
                f"Container group {self._names(spec)['container_group']} is crash-looping: {status.detail}",
                permanent=False,
            )
        if status.state in (RunState.MISSING, RunState.FAILED):
            group = self._ensure_container_group(spec)
            self._wait_running(spec, group)
            return True
        self._group_action(spec, "Starting", self.containers.container_groups.begin_start)
        self._wait_running(spec)
        return True

    def status(self, spec: IndexSpec) -> IndexStatus:
        """Provisioning state, each container's state, restart count and last event; for a group
        that is not running, also the events and each container's log tail."""
        status = self._status_of(self._get_group(spec))
        if status.state in (RunState.FAILED, RunState.STARTING, RunState.STOPPED):
            status.detail += self._log_tails(spec)
        return status

    @staticmethod
    def _failure_detail(group: aci.ContainerGroup) -> str:
        messages: list[str] = []
        for container in group.containers or []:
            view = container.instance_view
            events: list[aci.Event] = (view.events if view else None) or []
            for event in events:
                if (event.type or "").lower() == "warning" and event.message:
                    messages.append(f"{container.name}: {event.message}")
        return "; ".join(dict.fromkeys(messages))

    def _status_of(self, group: aci.ContainerGroup | None) -> IndexStatus:
        if group is None:
            return IndexStatus(state=RunState.MISSING, detail="The container group does not exist.")
        provisioning = str(group.provisioning_state or "")
        view_state = str(getattr(group.instance_view, "state", "") or "")
        containers = []
        for container in group.containers or []:
            view = container.instance_view
            current = view.current_state if view else None
            events: list[aci.Event] = (view.events if view else None) or []
            last = events[-1] if events else None
            containers.append(
                ContainerStatus(
                    name=container.name,
                    state=_container_state(getattr(current, "state", None)),
                    restart_count=(view.restart_count or 0) if view else 0,
                    last_event=f"{last.name}: {last.message}" if last else "",
                )
            )
        crash_looping = [
            c.name
            for c in containers
            if c.state != ContainerState.RUNNING and c.restart_count >= settings.AZURE_CRASH_LOOP_RESTARTS
        ]
        if provisioning.lower() == "failed" or view_state.lower() == "failed":
            state = RunState.FAILED
        elif view_state.lower() == "running" and crash_looping:
            # Crash loops keep provisioningState Succeeded and the group Running.
            state = RunState.FAILED
        elif view_state.lower() == "stopped":
            state = RunState.STOPPED
        elif (
            view_state.lower() == "running"
            and containers
            and all(c.state == ContainerState.RUNNING for c in containers)
        ):
            state = RunState.RUNNING
        else:
            state = RunState.STARTING
        detail = f"Provisioning {provisioning or 'unknown'}, group {view_state or 'unknown'}"
        failure = self._failure_detail(group)
        if failure:
            detail += f". {failure}"
        if crash_looping:
            detail += ". Crash loop: " + ", ".join(crash_looping)
        return IndexStatus(state=state, containers=containers, detail=detail)
