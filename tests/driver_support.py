"""One name for a backend's index runtime and its share store, for the tests written while the
two were one driver: `driver.status(...)` and `driver.read_file(...)` keep reading as they did.
The portal itself uses `get_runtime()` and `get_store()`."""

from __future__ import annotations

from typing import Any

from provisioning.drivers.backend import Backend, get_runtime, get_store
from provisioning.drivers.runtime import IndexRuntime
from provisioning.drivers.store import ShareStore


class RuntimeAndStore:
    """Answers with the runtime's attribute, else the store's."""

    def __init__(self, runtime: IndexRuntime, store: ShareStore) -> None:
        self.runtime = runtime
        self.store = store

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self.runtime, name)
        except AttributeError:
            return getattr(self.store, name)


def driver_of(backend: Backend) -> RuntimeAndStore:
    return RuntimeAndStore(backend.runtime, backend.store)


def get_driver() -> RuntimeAndStore:
    """The configured backend's runtime and store."""
    return RuntimeAndStore(get_runtime(), get_store())
