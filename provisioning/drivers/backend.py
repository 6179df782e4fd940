"""Which runtime and store the portal uses: the backend named by settings.PROVISIONING_DRIVER.

A backend pairs an index runtime with the share store its indexes use (the runtime writes each
index's configuration through that store). `local.LocalDriver` and `azure.AzureDriver` are the
two; the setting keeps its documented values, the dotted paths of those classes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from provisioning.drivers.runtime import IndexRuntime
from provisioning.drivers.store import ShareStore


@dataclass(frozen=True)
class Backend:
    runtime: IndexRuntime
    store: ShareStore


@functools.cache
def _backend_for(dotted_path: str) -> Backend:
    return import_string(dotted_path)()


def get_runtime() -> IndexRuntime:
    """The index runtime of the configured backend (one instance per process)."""
    return _backend_for(settings.PROVISIONING_DRIVER).runtime


def get_store() -> ShareStore:
    """The share store of the configured backend (one instance per process)."""
    return _backend_for(settings.PROVISIONING_DRIVER).store
