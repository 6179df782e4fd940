"""The Azure driver: one storage account with three Azure File shares and one container group
(Caddy in front of the index server) per index, built with the Azure SDKs.

This is the only module that imports azure.*. Clients are created lazily from settings (ARM
base URL, file endpoint template, CA bundle), so the same code runs against Azure and against
`devtools.azure_emulator`. Every step is idempotent: ARM PUTs are create-or-update with the same
body, files are only written when missing or different, deletes of missing things succeed.
Storage keys are fetched when needed, kept in this process's memory for a few minutes, and never
stored in the database or logged.
"""

from __future__ import annotations

import contextlib
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
    SERVER_PORT,
    IndexSpec,
    Placement,
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
}
TRANSIENT_STATUSES = {408, 409, 423, 429, 500, 502, 503, 504}


def _short_hash(index_id: int, length: int) -> str:
    salt = settings.AZURE_NAME_SALT
    return hashlib.sha256(f"{salt}:{index_id}".encode()).hexdigest()[:length]


def storage_account_name(index_id: int, name: str) -> str:
    """3-24 lowercase letters and digits, unique across Azure: the index name's letters and
    digits plus 8 hex digits of a hash of the index id (and the portal's salt)."""
    letters = re.sub(r"[^a-z0-9]", "", name.lower())[:16]
    return f"{letters}{_short_hash(index_id, 8)}"[:24]


def dns_label(index_id: int, name: str) -> str:
    """A DNS label (<= 63 characters) that is the host name's first part, unique per index."""
    stem = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:56].rstrip("-") or "index"
    if not stem[0].isalpha():  # ACI labels must start with a letter
        stem = f"i{stem}"[:56].rstrip("-")
    return f"{stem}-{_short_hash(index_id, 6)}"


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


def to_driver_error(exc: BaseException, doing: str) -> DriverError:
    """An SDK exception as a DriverError with Azure's message, flagged permanent when a retry
    of the same call cannot succeed (bad names, quotas, missing rights)."""
    message = f"{doing}: {_azure_message(exc)}"
    if isinstance(exc, CredentialUnavailableError):
        return DriverError(f"{doing}: no Azure credential is available ({_azure_message(exc)})", permanent=True)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return DriverError(f"{doing}: Azure did not answer ({_azure_message(exc)})", permanent=False)
    if isinstance(exc, ClientAuthenticationError):
        # A refused token (wrong secret, missing role assignment) needs an operator, not a retry.
        return DriverError(message, permanent=True)
    if isinstance(exc, HttpResponseError):
        permanent = _error_code(exc) in PERMANENT_CODES or exc.status_code in {400, 401, 403, 404, 413}
        return DriverError(message, permanent=permanent)
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
        """The host name `<label>.<region>.azurecontainer.io` (Let's Encrypt through Caddy) and
        the resource names, all derived from the index, so a retry lands on the same resources."""
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
            hostname=f"{label}.{location}.azurecontainer.io",
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
            },
        )

    @staticmethod
    def _names(spec: IndexSpec) -> dict[str, str]:
        return spec.placement.resources

    # --- steps
    def deploy_steps(self, spec: IndexSpec) -> list[DeployStep]:
        names = self._names(spec)
        # The group the create step's final GET returned: the wait step's first look needs no request.
        created: dict[str, aci.ContainerGroup] = {}
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
            DeployStep("config", "Write the Caddy and index server configuration", lambda: self.write_config(spec)),
            DeployStep(
                "container_group",
                f"Container group {names['container_group']}",
                lambda: created.update(group=self._ensure_container_group(spec)),
            ),
            # A live condition: checked again on every attempt (see DeployStep).
            DeployStep(
                "running",
                "Wait until the containers run",
                lambda: self._wait_running(spec, created.pop("group", None)),
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
        parameters = StorageAccountCreateParameters(
            sku=Sku(name=settings.AZURE_STORAGE_SKU),
            kind=settings.AZURE_STORAGE_KIND,
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
            try:
                self.storage.file_shares.create(
                    names["resource_group"],
                    names["storage_account"],
                    share.name,
                    FileShare(
                        file_share_properties=FileShareProperties(share_quota=share.quota_gb, enabled_protocols="SMB")
                    ),
                )
            except ResourceExistsError:
                # Some API versions answer 409 instead of updating: set the quota instead.
                self._call(
                    doing,
                    self.storage.file_shares.update,
                    names["resource_group"],
                    names["storage_account"],
                    share.name,
                    FileShare(file_share_properties=FileShareProperties(share_quota=share.quota_gb)),
                )
            except AzureError as exc:
                raise to_driver_error(exc, doing) from exc

    def container_group_model(self, spec: IndexSpec, account_key: str) -> aci.ContainerGroup:
        """The container group for `spec`: Caddy publishing 80/443 (nothing else is public) in
        front of the index server, each share mounted as an Azure File volume."""
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
        return aci.ContainerGroup(
            location=names["location"],
            tags=dict(spec.tags),
            containers=containers,
            os_type="Linux",
            sku="Standard",
            restart_policy="Always",
            ip_address=aci.IpAddress(
                type="Public",
                ports=[aci.Port(port=port, protocol="TCP") for port in spec.public_ports],
                dns_name_label=names["dns_label"],
            ),
            volumes=volumes,
        )

    def _ensure_container_group(self, spec: IndexSpec) -> aci.ContainerGroup:
        names = self._names(spec)
        doing = f"Creating container group {names['container_group']}"
        group = self.container_group_model(spec, self._account_key(spec))
        poller = self._call(
            doing,
            self.containers.container_groups.begin_create_or_update,
            names["resource_group"],
            names["container_group"],
            group,
        )
        result = self._wait(doing, poller)
        state = str(getattr(result, "provisioning_state", "") or "")
        if state.lower() == "failed":
            raise DriverError(f"{doing}: {self._failure_detail(result) or 'the deployment failed.'}", permanent=True)
        return result

    def _get_group(self, spec: IndexSpec) -> aci.ContainerGroup | None:
        names = self._names(spec)
        try:
            return self.containers.container_groups.get(names["resource_group"], names["container_group"])
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise to_driver_error(exc, f"Reading container group {names['container_group']}") from exc

    def _wait_running(self, spec: IndexSpec, group: aci.ContainerGroup | None = None) -> None:
        """Until the group and every container run (or fail: then permanently, with Azure's events).
        `group`, when given, is a state just read, used for the first look."""
        names = self._names(spec)
        deadline = time.monotonic() + settings.AZURE_LRO_TIMEOUT_SECONDS
        while True:
            status = self._status_of(group or self._get_group(spec))
            group = None
            if status.is_running:
                return
            if status.state in ("failed", "missing"):
                raise DriverError(
                    f"Container group {names['container_group']} is {status.state}: {status.detail or 'no details'}",
                    permanent=status.state == "failed",
                )
            if time.monotonic() > deadline:
                raise DriverError(
                    f"Container group {names['container_group']} is still {status.state} after "
                    f"{settings.AZURE_LRO_TIMEOUT_SECONDS:g} s: {status.detail}",
                    permanent=False,
                )
            time.sleep(settings.AZURE_POLLING_INTERVAL_SECONDS)

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
        deadline = time.monotonic() + settings.ACME_CERTIFICATE_TIMEOUT_SECONDS
        while True:
            result = inspect_certificate(
                spec.hostname, spec.placement.https_port, ca_pem=roots, timeout=settings.CERT_CHECK_TIMEOUT_SECONDS
            )
            if result.status in (CertificateStatus.VALID, CertificateStatus.EXPIRING):
                return
            if time.monotonic() > deadline:
                raise DriverError(
                    f"No valid certificate for {spec.hostname} after "
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
        self._group_operation(spec, "Restarting", self.containers.container_groups.begin_restart)
        self._wait_running(spec)
        self._wait_certificate(spec)  # the index answers HTTPS again, with its certificate

    def _group_operation(self, spec: IndexSpec, verb: str, begin: Callable[..., LROPoller[Any]]) -> None:
        """Run one long-running operation on the index's container group and wait for it."""
        names = self._names(spec)
        doing = f"{verb} container group {names['container_group']}"
        self._wait(doing, self._call(doing, begin, names["resource_group"], names["container_group"]))

    def ensure_running(self, spec: IndexSpec) -> bool:
        """Recreate a missing container group or start a stopped one; True when it had to."""
        group = self._get_group(spec)
        status = self._status_of(group)
        if status.is_running or status.state == "starting":
            return False
        group = None
        if status.state in ("missing", "failed"):
            group = self._ensure_container_group(spec)
        else:
            self._group_operation(spec, "Starting", self.containers.container_groups.begin_start)
        self._wait_running(spec, group)
        return True

    def status(self, spec: IndexSpec) -> IndexStatus:
        """Provisioning state, each container's state, restart count and last event."""
        return self._status_of(self._get_group(spec))

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
        if provisioning.lower() == "failed" or view_state.lower() == "failed":
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
