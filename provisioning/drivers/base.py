"""The one interface through which the portal touches an index's resources.

Two implementations build the same topology from the same `IndexSpec`: `local.LocalDriver`
(pypiserver and Caddy as child processes, three folders as the shares) and `azure.AzureDriver`
(a storage account with three Azure File shares and a container group). Drivers return the
dataclasses below, never SDK objects, and raise `DriverError`.
"""

from __future__ import annotations

import abc
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings
from django.utils.module_loading import import_string

from provisioning.spec import SHARE_CERTS, SHARE_CONFIG, SHARE_PACKAGES, IndexSpec, Placement


class DriverError(Exception):
    """A driver operation failed. `permanent` means retrying the same call cannot help
    (bad name, quota exceeded, no free port); otherwise a retry may succeed."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent

    def __str__(self) -> str:
        return self.message


def check_share_path(share: str, path: str) -> tuple[str, ...]:
    """The parts of a relative "/"-separated path in one of the three shares. Raises
    DriverError(permanent=True) for an unknown share or a path that could leave it."""
    if share not in {SHARE_CERTS, SHARE_CONFIG, SHARE_PACKAGES}:
        raise DriverError(f"Unknown share {share!r}.", permanent=True)
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in {"..", "."} or "\\" in p for p in parts):
        raise DriverError(f"Invalid path {path!r}.", permanent=True)
    return parts


@dataclass(frozen=True)
class DeployStep:
    """One idempotent step of building or tearing down an index. `run` may be called again
    after a crash or on retry and must then change nothing that is already right.

    A retry resumes from the failed step, skipping steps already done, except those marked
    `rerun`: steps whose result `halt` undoes (processes, containers) or that check a live
    condition (health), which must hold on every attempt."""

    name: str
    label: str
    run: Callable[[], None]
    rerun: bool = False


@dataclass
class ContainerStatus:
    name: str
    state: str  # running | waiting | terminated | missing
    restart_count: int = 0
    last_event: str = ""


@dataclass
class IndexStatus:
    state: str  # running | starting | stopped | failed | missing
    containers: list[ContainerStatus] = field(default_factory=list)
    detail: str = ""

    @property
    def is_running(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ShareFile:
    path: str  # relative to the share root, "/"-separated
    size: int
    modified: datetime | None = None


class Driver(abc.ABC):
    """Contract shared by every driver. Every method is safe to call again after a failure."""

    name: str = "abstract"

    @abc.abstractmethod
    def reserve(self, *, index_id: int, name: str, previous: dict | None) -> Placement:
        """Choose where the index lives: host name, ports, resource names.

        Returns the `previous` placement unchanged when it is still valid, so a retry keeps the
        index where it was. Raises DriverError(permanent=True) when nothing can be reserved.
        """

    @abc.abstractmethod
    def deploy_steps(self, spec: IndexSpec) -> list[DeployStep]:
        """The ordered steps that create or update the index's resources (idempotent each)."""

    @abc.abstractmethod
    def teardown_steps(self, spec: IndexSpec) -> list[DeployStep]:
        """The ordered steps that remove everything the index owns and confirm it is gone."""

    @abc.abstractmethod
    def restart(self, spec: IndexSpec) -> None:
        """Restart the index's containers (Caddy keeps its certificates: they live on a share).
        Returns once the index answers its health check again. Raises DriverError."""

    @abc.abstractmethod
    def ensure_running(self, spec: IndexSpec) -> bool:
        """Bring a ready index back if its processes or containers are gone.
        Returns True when something had to be started."""

    @abc.abstractmethod
    def status(self, spec: IndexSpec) -> IndexStatus:
        """Read the index's container states, restart counts and last events. Never raises for
        a missing index: that is `IndexStatus(state="missing")`."""

    @abc.abstractmethod
    def write_file(self, spec: IndexSpec, share: str, path: str, source: IO[bytes], *, size: int) -> None:
        """Stream `size` bytes from `source` into `share`/`path`, written under a temporary name
        and renamed, so a half-written file is never visible. Creates parent folders."""

    @abc.abstractmethod
    def read_file(self, spec: IndexSpec, share: str, path: str) -> Iterator[bytes]:
        """Yield the file's bytes in chunks. Raises DriverError(permanent=True) if it is missing."""

    @abc.abstractmethod
    def list_files(self, spec: IndexSpec, share: str, prefix: str = "") -> list[ShareFile]:
        """Every file below `prefix` in the share (recursive), temporary upload files excluded."""

    @abc.abstractmethod
    def delete_file(self, spec: IndexSpec, share: str, path: str) -> None:
        """Delete one file; deleting a file that is already gone is not an error."""

    def write_if_changed(self, spec: IndexSpec, share: str, path: str, data: bytes) -> bool:
        """Write `data` unless the file already holds exactly that; True when it wrote.
        Keeps retries from rewriting configuration and credential files."""
        try:
            if b"".join(self.read_file(spec, share, path)) == data:
                return False
        except DriverError as exc:
            if not exc.permanent:  # Azure did not answer: the write would fail the same way
                raise
            # missing: write it
        self.write_file(spec, share, path, io.BytesIO(data), size=len(data))
        return True

    def write_config(self, spec: IndexSpec) -> None:
        """Write the spec's configuration files to the config share: definitions when they
        differ, the portal's state files (manifest, tokens) only when missing, so a retry never
        resets what the portal wrote since."""
        for config in spec.config_files:
            if config.replace:
                self.write_if_changed(spec, SHARE_CONFIG, config.path, config.content)
                continue
            try:
                self.read_file(spec, SHARE_CONFIG, config.path).close()  # raises when it is missing
            except DriverError as exc:
                if not exc.permanent:
                    raise
                self.write_file(spec, SHARE_CONFIG, config.path, io.BytesIO(config.content), size=len(config.content))

    def settled_placement(self, spec: IndexSpec) -> Placement:
        """The placement as the cloud decided it while the steps ran (Azure chooses the FQDN);
        the portal stores it after every provisioning attempt. Default: unchanged."""
        return spec.placement

    def halt(self, spec: IndexSpec) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Stop whatever still runs for an index whose provisioning failed, keeping its data so a
        retry can resume. Default: nothing runs unattended."""

    def ca_certificate_pem(self, spec: IndexSpec) -> str | None:
        """The CA certificate clients must trust to reach the index, or None when the index
        uses a publicly trusted certificate (Let's Encrypt)."""
        return None


@functools.cache
def _driver_for(dotted_path: str) -> Driver:
    return import_string(dotted_path)()


def get_driver() -> Driver:
    """The driver named by settings.PROVISIONING_DRIVER (one instance per process)."""
    return _driver_for(settings.PROVISIONING_DRIVER)
