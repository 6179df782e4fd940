"""The local backend: indexes on this machine, for a laptop run and the tests.

PROVISIONING_DRIVER=provisioning.drivers.local.LocalDriver (the default) selects it.
"""

from __future__ import annotations

from provisioning.drivers.backend import Backend
from provisioning.drivers.local_runtime import LocalRuntime
from provisioning.drivers.local_store import LocalShareStore


class LocalDriver(Backend):
    """Caddy and the index server as processes (`LocalRuntime`), the shares as folders
    (`LocalShareStore`)."""

    def __init__(self) -> None:
        store = LocalShareStore()
        super().__init__(runtime=LocalRuntime(store), store=store)
