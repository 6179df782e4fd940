"""The Azure driver: one storage account with three Azure File shares and one container group
(Caddy in front of the index server) per index, built with the Azure SDKs.

This is the only module that imports azure.*. Clients are created lazily from settings (ARM
base URL, file endpoint template, CA bundle), so the same code runs against Azure and against
`devtools.azure_emulator`. Every step is idempotent: storage PUTs are create-or-update with the
same body; the container group is read first and sent only when it differs (Azure restarts every
container on an unchanged PUT); files are only written when missing or different; deletes of
missing things succeed. The FQDN is Azure's (reuse-protected, hashed) and recorded in the
placement's resources, which the portal stores after each attempt (`settled_placement`).
Storage keys are fetched when needed, kept in this process's memory for a few minutes, and never
stored in the database or logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import IO, Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.polling import LROPoller
from azure.identity import CredentialUnavailableError, DefaultAzureCredential
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
from azure.storage.fileshare import ShareClient, ShareServiceClient
from django.conf import settings

from provisioning.azure_settings import azure_setting_problems, share_quota_gib, storage_kind
from provisioning.certs import CertificateStatus, inspect_certificate
from provisioning.drivers.base import (
    ContainerStatus,
    DeployStep,
    Driver,
    DriverError,
    IndexStatus,
    ShareFile,
    check_share_path,
)
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

T = TypeVar("T")
ARM_SCOPE = "https://management.azure.com/.default"
# Uploads are written as "<dir>/.portal-upload-<uuid>-<name>" and renamed when complete.
TEMP_PREFIX = ".portal-upload-"
KEY_CACHE_SECONDS = 300.0
# Azure error codes that no retry of the same request can fix.
PERMANENT_CODES = {
    "AccountNameInvalid",
    "StorageAccountAlreadyTaken",
    "StorageAccountAlreadyExists",
    "ContainerGroupQuotaReached",
    "QuotaExceeded",
    "SubscriptionQuotaExceeded",
    "AuthorizationFailed",
    "AuthenticationFailed",
    "InvalidAuthenticationToken",
    "LinkedAuthorizationFailed",
    "SubscriptionNotFound",
    "InvalidResourceGroupLocation",
    "ContainerGroupDeploymentFailed",
    "ShareSizeLimitReached",
    "MissingSubscriptionRegistration",
    "FeatureNotSupportedForAccount",
    "DnsNameLabelAlreadyTaken",
}
# The built-in role that grants an action the driver needs, by the action's prefix.
# https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles
ROLE_FOR_ACTION = (
    ("Microsoft.ManagedIdentity/", "Managed Identity Operator (on the registry pull identity)"),
    ("Microsoft.Storage/", "Storage Account Contributor"),
    ("Microsoft.ContainerInstance/", "Contributor"),
    ("Microsoft.Resources/", "Contributor"),
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


def _memory_gb(value: float) -> float:
    # ACI takes memory in steps of 0.1 GB.
    return float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _azure_message(exc: BaseException) -> str:
    """The Azure error code and message, without the SDK's repetition and request ids."""
    if isinstance(exc, HttpResponseError):
        code = _error_code(exc)
        message = getattr(getattr(exc, "error", None), "message", None)
        if not message:
            message = (exc.message or str(exc)).strip()
            message = re.sub(r"^\(\w+\)\s*", "", message)
            message = message.split("\nRequestId:")[0].split("\nCode:")[0].strip()
        if message.startswith("Operation returned an invalid status"):
            message = f"HTTP {exc.status_code} {exc.reason or ''}".strip()
        return f"{code}: {message}" if code and code not in message else message
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


def _error_code(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "error_code", None) or ""
    return str(code)


def _fix_for(exc: HttpResponseError) -> str:
    """What an operator does about an error a retry cannot fix, or about a throttled pull."""
    code = _error_code(exc)
    text = _azure_message(exc)
    if code == "MissingSubscriptionRegistration":
        # https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-register-resource-provider
        found = re.search(r"namespace '([^']+)'", text)
        namespace = found.group(1) if found else "Microsoft.ContainerInstance"
        return (
            f" The subscription is not registered for the resource provider {namespace}: someone with rights on "
            f"the subscription runs `az provider register --namespace {namespace}` once, then Retry."
        )
    if code in {"AuthorizationFailed", "LinkedAuthorizationFailed"}:
        found = re.search(r"perform action '([^']+)' over scope '([^']+)'", text)
        action, scope = found.groups() if found else ("", "the resource group")
        role = next((r for prefix, r in ROLE_FOR_ACTION if action.lower().startswith(prefix.lower())), "Contributor")
        return (
            f" The portal's identity needs the {role} role (or a role allowing {action or 'this action'}) on "
            f'{scope}: `az role assignment create --assignee <portal identity> --role "{role.split(" (")[0]}" '
            f"--scope {scope}`, then Retry."
        )
    if code == "RegistryErrorResponse":
        # https://learn.microsoft.com/en-us/azure/container-registry/buffer-gate-public-content
        return (
            " The image registry refused or throttled the pull (Docker Hub limits anonymous pulls from Azure's "
            "shared addresses). Retry later, or import the images into a registry once and set "
            "AZURE_REGISTRY_SERVER with its credentials (README, 'Images')."
        )
    return ""


def to_driver_error(exc: BaseException, doing: str) -> DriverError:
    """An SDK exception as a DriverError with Azure's message, flagged permanent when a retry
    of the same call cannot succeed (bad names, quotas, missing rights, unregistered providers)."""
    message = f"{doing}: {_azure_message(exc)}"
    if isinstance(exc, CredentialUnavailableError):
        return DriverError(f"{doing}: no Azure credential is available ({_azure_message(exc)})", permanent=True)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return DriverError(f"{doing}: Azure did not answer ({_azure_message(exc)})", permanent=False)
    if isinstance(exc, HttpResponseError) and not isinstance(exc, ClientAuthenticationError):
        code = _error_code(exc)
        # A pull refused by the registry is worth retrying; everything else here needs an operator.
        permanent = code != "RegistryErrorResponse" and (
            code in PERMANENT_CODES or exc.status_code in {400, 401, 403, 404, 413}
        )
        return DriverError(message + _fix_for(exc), permanent=permanent)
    if isinstance(exc, ClientAuthenticationError):
        # A refused token (wrong secret, missing role assignment) needs an operator, not a retry.
        return DriverError(message + _fix_for(exc), permanent=True)
    return DriverError(message, permanent=False)


class AzureDriver(Driver):
    """Builds each index as Azure resources named from the index (see `reserve`)."""

    name = "azure"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credential: DefaultAzureCredential | None = None
        self._clients: dict[str, Any] = {}
        # account name -> (fetched at, key, service client); memory only, never persisted.
        self._accounts: dict[str, tuple[float, str, ShareServiceClient]] = {}

    # --- clients
    def _verify(self) -> str | bool:
        return settings.AZURE_CA_BUNDLE or True

    def _credential_for(self) -> DefaultAzureCredential:
        with self._lock:
            if self._credential is None:
                options: dict[str, Any] = {"exclude_interactive_browser_credential": True}
                if settings.AZURE_CA_BUNDLE:
                    options["connection_verify"] = settings.AZURE_CA_BUNDLE
                if settings.AZURE_DISABLE_INSTANCE_DISCOVERY:
                    # Needed for an authority that is not a Microsoft cloud (the emulator).
                    options["disable_instance_discovery"] = True
                self._credential = DefaultAzureCredential(**options)
            return self._credential

    def _client(self, kind: str) -> Any:
        with self._lock:
            client = self._clients.get(kind)
        if client is not None:
            return client
        if not settings.AZURE_SUBSCRIPTION_ID:
            raise DriverError("AZURE_SUBSCRIPTION_ID is not set.", permanent=True)
        factory = {
            "resource": ResourceManagementClient,
            "storage": StorageManagementClient,
            "containers": ContainerInstanceManagementClient,
        }[kind]
        client = factory(
            self._credential_for(),
            settings.AZURE_SUBSCRIPTION_ID,
            base_url=settings.AZURE_ARM_BASE_URL,
            credential_scopes=[ARM_SCOPE],
            connection_verify=self._verify(),
            polling_interval=settings.AZURE_POLLING_INTERVAL_SECONDS,
            retry_total=settings.AZURE_RETRY_TOTAL,
            retry_backoff_factor=settings.AZURE_RETRY_BACKOFF_FACTOR,
            connection_timeout=settings.AZURE_CONNECTION_TIMEOUT_SECONDS,
            read_timeout=settings.AZURE_READ_TIMEOUT_SECONDS,
        )
        with self._lock:
            return self._clients.setdefault(kind, client)

    @property
    def resources(self) -> ResourceManagementClient:
        return self._client("resource")

    @property
    def storage(self) -> StorageManagementClient:
        return self._client("storage")

    @property
    def containers(self) -> ContainerInstanceManagementClient:
        return self._client("containers")

    def _call(self, doing: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except AzureError as exc:
            raise to_driver_error(exc, doing) from exc

    def _wait(self, doing: str, poller: LROPoller[T]) -> T:
        """Wait for a long-running operation, at most AZURE_LRO_TIMEOUT_SECONDS."""
        try:
            poller.wait(timeout=settings.AZURE_LRO_TIMEOUT_SECONDS)
            if not poller.done():
                raise DriverError(
                    f"{doing}: Azure did not finish within {settings.AZURE_LRO_TIMEOUT_SECONDS:g} s "
                    f"(last status: {poller.status()}). Retry to keep waiting.",
                    permanent=False,
                )
            return poller.result()
        except AzureError as exc:
            raise to_driver_error(exc, doing) from exc

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
        # The group the create step just read or created: the next steps' first look needs no request.
        seen: dict[str, aci.ContainerGroup] = {}
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
                lambda: seen.update(group=self._ensure_container_group(spec)),
                rerun=True,
            ),
            DeployStep(
                "caddyfile",
                "Write the Caddy configuration for the host name Azure gave",
                lambda: self._write_caddyfile(spec, seen),
            ),
            # A live condition: checked again on every attempt (see DeployStep).
            DeployStep(
                "running",
                "Wait until the containers run",
                lambda: self._wait_running(spec, seen.pop("group", None)),
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
        self._call(
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
        poller = self._call(
            doing, self.storage.storage_accounts.begin_create, names["resource_group"], account, parameters
        )
        result = self._wait(doing, poller)
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
                if _error_code(exc) == "MissingSubscriptionRegistration":
                    raise to_driver_error(exc, doing) from exc
                # Some API versions answer 409 instead of updating: set the quota (PATCH) instead.
                self._call(
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
        self.write_config(dataclasses.replace(spec, config_files=tuple(files)))

    def _caddyfile(self, spec: IndexSpec) -> bytes:
        return index_caddyfile(self.settled_placement(spec)).encode()

    def _write_caddyfile(self, spec: IndexSpec, seen: dict[str, aci.ContainerGroup]) -> None:
        """The Caddyfile for the FQDN Azure gave. Caddy reads it when it starts, so a group that
        started without it (or with another host name) is restarted once, and only then."""
        names = self._names(spec)
        if not names.get("fqdn"):
            self._record_fqdn(spec, seen.get("group") or self._get_group(spec))
        if not self.write_if_changed(spec, SHARE_CONFIG, CADDYFILE_PATH, self._caddyfile(spec)):
            return
        seen.pop("group", None)
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
        wanted = self.container_group_model(spec, self._account_key(spec))
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
            if _error_code(exc) == "DnsNameLabelAlreadyTaken":
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
            f"The DNS name label {taken!r} is taken in {names['location']} ({_azure_message(exc)}). "
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
        self._wait(doing, poller)

    def _delete_storage_account(self, spec: IndexSpec) -> None:
        names = self._names(spec)
        account = names["storage_account"]
        self._forget_key(spec)
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
        self._wait(f"Deleting resource group {rg}", poller)

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
            return f"(the log cannot be read: {_azure_message(exc)})"
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
        self._call(
            f"{doing} container group {names['container_group']}",
            lambda: begin(names["resource_group"], names["container_group"], polling=False).result(),
        )

    def ensure_running(self, spec: IndexSpec) -> bool:
        """Recreate a missing or Failed container group, start a stopped one; True when it had
        to. A healthy group is left alone (a PUT would restart it); a crash loop is reported."""
        group = self._get_group(spec)
        status = self._status_of(group)
        if status.is_running or status.state == "starting":
            return False
        if group is not None and status.state == "failed" and str(group.provisioning_state).lower() != "failed":
            raise DriverError(
                f"Container group {self._names(spec)['container_group']} is crash-looping: {status.detail}",
                permanent=False,
            )
        if status.state in ("missing", "failed"):
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
        if status.state in ("failed", "starting", "stopped"):
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
            return IndexStatus(state="missing", detail="The container group does not exist.")
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
                    state=str(getattr(current, "state", "") or "waiting").lower(),
                    restart_count=(view.restart_count or 0) if view else 0,
                    last_event=f"{last.name}: {last.message}" if last else "",
                )
            )
        crash_looping = [
            c.name for c in containers if c.state != "running" and c.restart_count >= settings.AZURE_CRASH_LOOP_RESTARTS
        ]
        if provisioning.lower() == "failed" or view_state.lower() == "failed":
            state = "failed"
        elif view_state.lower() == "running" and crash_looping:
            # Crash loops keep provisioningState Succeeded and the group Running.
            state = "failed"
        elif view_state.lower() == "stopped":
            state = "stopped"
        elif view_state.lower() == "running" and containers and all(c.state == "running" for c in containers):
            state = "running"
        else:
            state = "starting"
        detail = f"Provisioning {provisioning or 'unknown'}, group {view_state or 'unknown'}"
        failure = self._failure_detail(group)
        if failure:
            detail += f". {failure}"
        if crash_looping:
            detail += ". Crash loop: " + ", ".join(crash_looping)
        return IndexStatus(state=state, containers=containers, detail=detail)

    # --- files on the shares
    def _account_key(self, spec: IndexSpec) -> str:
        return self._account(spec)[0]

    def _account(self, spec: IndexSpec) -> tuple[str, ShareServiceClient]:
        names = self._names(spec)
        account = names["storage_account"]
        with self._lock:
            cached = self._accounts.get(account)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
            return cached[1], cached[2]
        keys = self._call(
            f"Reading the keys of storage account {account}",
            self.storage.storage_accounts.list_keys,
            names["resource_group"],
            account,
        )
        key = keys.keys_property[0] if keys.keys_property else None
        if key is None or not key.value:
            raise DriverError(f"Storage account {account} returned no keys.", permanent=False)
        key_value: str = key.value
        client = ShareServiceClient(
            account_url=settings.AZURE_FILE_ENDPOINT.format(account=account),
            credential={"account_name": account, "account_key": key_value},
            connection_verify=self._verify(),
            retry_total=settings.AZURE_FILE_RETRY_TOTAL,
            initial_backoff=settings.AZURE_FILE_RETRY_BACKOFF_SECONDS,
            increment_base=settings.AZURE_FILE_RETRY_BACKOFF_SECONDS / 5,
            random_jitter_range=settings.AZURE_FILE_RETRY_BACKOFF_SECONDS / 5,
            connection_timeout=settings.AZURE_CONNECTION_TIMEOUT_SECONDS,
            read_timeout=settings.AZURE_READ_TIMEOUT_SECONDS,
        )
        with self._lock:
            self._accounts[account] = (time.monotonic(), key_value, client)
        return key_value, client

    def _forget_key(self, spec: IndexSpec) -> None:
        with self._lock:
            self._accounts.pop(self._names(spec)["storage_account"], None)

    def _share(self, spec: IndexSpec, share: str) -> ShareClient:
        return self._account(spec)[1].get_share_client(share)

    def _file_call(self, spec: IndexSpec, doing: str, func: Callable[[ShareClient], T], share: str) -> T:
        """Run a File service call; a rotated key (403) is fetched again once."""
        for attempt in range(2):
            try:
                return func(self._share(spec, share))
            except HttpResponseError as exc:
                if attempt == 0 and _error_code(exc) == "AuthenticationFailed":
                    self._forget_key(spec)
                    continue
                raise to_driver_error(exc, doing) from exc
            except AzureError as exc:
                raise to_driver_error(exc, doing) from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _make_parents(share: ShareClient, path: str) -> None:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            with contextlib.suppress(ResourceExistsError):
                share.create_directory("/".join(parts[:depth]))

    def _upload(self, share: ShareClient, path: str, source: IO[bytes], size: int, *, temporary: bool = True) -> None:
        """Write under a temporary name in ranges, in parallel, then rename over `path`.
        Raises the SDK's errors (the caller turns them into DriverError)."""
        directory, _, base = path.rpartition("/")
        target = f"{directory}/{TEMP_PREFIX}{uuid.uuid4().hex}-{base}".lstrip("/") if temporary else path
        file_client = share.get_file_client(target)
        concurrency = settings.AZURE_FILE_MAX_CONCURRENCY
        try:
            try:
                file_client.upload_file(source, length=size, max_concurrency=concurrency)
            except ResourceNotFoundError as exc:
                if _error_code(exc) != "ParentNotFound":
                    raise
                # Parents are created only when missing: most uploads go to existing folders.
                self._make_parents(share, path)
                file_client.upload_file(source, length=size, max_concurrency=concurrency)
            if temporary:
                file_client.rename_file(path, overwrite=True)
        except AzureError:
            if temporary:
                with contextlib.suppress(AzureError):
                    file_client.delete_file()
            raise

    def write_file(self, spec: IndexSpec, share: str, path: str, source: IO[bytes], *, size: int) -> None:
        """Stream `size` bytes into share/path via a temporary name and a rename. Raises DriverError."""
        check_share_path(share, path)
        start = source.tell()

        def upload(client: ShareClient) -> None:
            source.seek(start)  # a retry (rotated key) starts again from the first byte
            self._upload(client, path, source, size)

        self._file_call(spec, f"Writing {share}/{path}", upload, share)

    def read_file(self, spec: IndexSpec, share: str, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks; DriverError(permanent=True) when it does not exist."""
        check_share_path(share, path)
        doing = f"Reading {share}/{path}"
        downloader = self._file_call(
            spec,
            doing,
            lambda s: s.get_file_client(path).download_file(max_concurrency=settings.AZURE_FILE_MAX_CONCURRENCY),
            share,
        )

        def chunks() -> Iterator[bytes]:
            try:
                yield from downloader.chunks()
            except AzureError as exc:  # a range that fails after its retries, mid-stream
                raise to_driver_error(exc, doing) from exc

        return chunks()

    def list_files(self, spec: IndexSpec, share: str, prefix: str = "") -> list[ShareFile]:
        """Every file whose path starts with `prefix`, recursively, without temporary uploads."""
        prefix = prefix.lstrip("/")
        start = prefix.rpartition("/")[0]

        def walk(client: ShareClient) -> list[ShareFile]:
            found: list[ShareFile] = []
            pending = [start]
            while pending:
                directory = pending.pop()
                try:
                    entries = list(
                        client.list_directories_and_files(directory_name=directory or None, include=["timestamps"])
                    )
                except ResourceNotFoundError:
                    continue
                for entry in entries:
                    path = f"{directory}/{entry['name']}" if directory else entry["name"]
                    if entry.get("is_directory"):
                        if path.startswith(prefix) or prefix.startswith(path + "/"):
                            pending.append(path)
                    elif path.startswith(prefix) and not entry["name"].startswith(TEMP_PREFIX):
                        found.append(
                            ShareFile(path=path, size=entry.get("size") or 0, modified=entry.get("last_modified"))
                        )
            return sorted(found, key=lambda f: f.path)

        return self._file_call(spec, f"Listing {share}/{prefix}", walk, share)

    def delete_file(self, spec: IndexSpec, share: str, path: str) -> None:
        """Delete one file; a file that is already gone is fine."""
        check_share_path(share, path)

        def delete(client: ShareClient) -> None:
            with contextlib.suppress(ResourceNotFoundError):
                client.get_file_client(path).delete_file()

        self._file_call(spec, f"Deleting {share}/{path}", delete, share)
