"""What the Azure runtime and the Azure share store share: one credential, the management
clients, storage account keys, and the mapping of Azure's errors to DriverError.

The Azure SDK is imported only by the azure*.py modules of this package. Clients are created
lazily from settings (ARM base URL, file endpoint template, CA bundle), so the same code runs
against Azure and against `devtools.azure_emulator`. Storage keys are fetched when needed, kept
in this process's memory for a few minutes, and never stored in the database or logged.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.polling import LROPoller
from azure.identity import CredentialUnavailableError, DefaultAzureCredential
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.storage.fileshare import ShareServiceClient
from django.conf import settings

from provisioning.drivers.base import DriverError
from provisioning.spec import IndexSpec

T = TypeVar("T")
ARM_SCOPE = "https://management.azure.com/.default"
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


def azure_message(exc: BaseException) -> str:
    """The Azure error code and message, without the SDK's repetition and request ids."""
    if isinstance(exc, HttpResponseError):
        code = error_code(exc)
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


def error_code(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "error_code", None) or ""
    # The File service SDK gives a StorageErrorCode, a str enum whose str() is its Python name.
    return str(code.value if isinstance(code, enum.Enum) else code)


def _fix_for(exc: HttpResponseError) -> str:
    """What an operator does about an error a retry cannot fix, or about a throttled pull."""
    code = error_code(exc)
    text = azure_message(exc)
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
    of the same call cannot succeed (bad names, quotas, missing rights, unregistered providers).
    Throttling (429), 5xx answers and no answer at all are transient: Azure Resource Manager asks
    callers to wait and retry (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling)."""
    message = f"{doing}: {azure_message(exc)}"
    if isinstance(exc, CredentialUnavailableError):
        return DriverError(f"{doing}: no Azure credential is available ({azure_message(exc)})", permanent=True)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return DriverError(f"{doing}: Azure did not answer ({azure_message(exc)})", permanent=False)
    if isinstance(exc, HttpResponseError) and not isinstance(exc, ClientAuthenticationError):
        code = error_code(exc)
        # A pull refused by the registry is worth retrying; everything else here needs an operator.
        permanent = code != "RegistryErrorResponse" and (
            code in PERMANENT_CODES or exc.status_code in {400, 401, 403, 404, 413}
        )
        return DriverError(message + _fix_for(exc), permanent=permanent)
    if isinstance(exc, ClientAuthenticationError):
        # A refused token (wrong secret, missing role assignment) needs an operator, not a retry.
        return DriverError(message + _fix_for(exc), permanent=True)
    return DriverError(message, permanent=False)


class AzureClients:
    """One per backend, shared by its runtime and its store (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credential: DefaultAzureCredential | None = None
        self._clients: dict[str, Any] = {}
        # account name -> (fetched at, key, service client); memory only, never persisted.
        self._accounts: dict[str, tuple[float, str, ShareServiceClient]] = {}

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

    def call(self, doing: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`func(*args, **kwargs)`; an Azure error becomes a DriverError that starts with `doing`."""
        try:
            return func(*args, **kwargs)
        except AzureError as exc:
            raise to_driver_error(exc, doing) from exc

    def wait(self, doing: str, poller: LROPoller[T]) -> T:
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

    # --- storage accounts
    def account_key(self, spec: IndexSpec) -> str:
        """The storage account's first key (fetched at most every KEY_CACHE_SECONDS)."""
        return self.account(spec)[0]

    def account(self, spec: IndexSpec) -> tuple[str, ShareServiceClient]:
        """The key of the index's storage account and a File service client signed with it."""
        names = spec.placement.resources
        account = names["storage_account"]
        with self._lock:
            cached = self._accounts.get(account)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
            return cached[1], cached[2]
        keys = self.call(
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

    def forget_key(self, spec: IndexSpec) -> None:
        """Fetch the key again next time (it was rotated, or the account is being deleted)."""
        with self._lock:
            self._accounts.pop(spec.placement.resources["storage_account"], None)
