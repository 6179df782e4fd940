"""The Azure backend: each index as Azure resources (a container group and a storage account
with three Azure File shares).

PROVISIONING_DRIVER=provisioning.drivers.azure.AzureDriver selects it; the Azure settings it
needs are checked at startup (`provisioning.azure_settings`).
"""

from __future__ import annotations

from provisioning.drivers.azure_clients import AzureClients
from provisioning.drivers.azure_runtime import AzureRuntime
from provisioning.drivers.azure_store import AzureShareStore
from provisioning.drivers.backend import Backend


class AzureDriver(Backend):
    """The container group (`AzureRuntime`) and the shares' files (`AzureShareStore`), through
    one credential, one set of clients and one storage key cache (`AzureClients`)."""

    def __init__(self) -> None:
        clients = AzureClients()
        store = AzureShareStore(clients)
        super().__init__(runtime=AzureRuntime(clients, store), store=store)
