"""What the two driver contracts share: the error they raise.

The portal touches an index's resources through two contracts, split the way libcloud separates
a NodeDriver from a StorageDriver: `runtime.IndexRuntime` builds, runs and removes an index
(placement, deploy and teardown steps, restart, status) and `store.ShareStore` reads and writes
the files on its three shares. A backend (`backend.Backend`, named by PROVISIONING_DRIVER) pairs
one of each: `local.LocalDriver` (processes and folders on this machine) and `azure.AzureDriver`
(a container group and Azure File shares). Implementations return the dataclasses of their
contract, never SDK objects, and raise `DriverError`.
"""

from __future__ import annotations


class DriverError(Exception):
    """A runtime or store operation failed.

    `permanent`: calling again cannot succeed until someone changes something (a bad name, a
    quota, a missing right or file, an image that is not installed, no free port). Otherwise
    (throttling, a 5xx, a timeout, a process still starting) the same call may succeed later.
    The step runner reads it to fail a step at once or try it again; code that needs to know a
    file is missing catches `ShareFileMissing` instead."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent

    def __str__(self) -> str:
        return self.message


class ShareFileMissing(DriverError):
    """The file asked for is not on the share (always permanent: reading again finds nothing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)
