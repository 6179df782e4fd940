"""The share store contract: the files on an index's three shares (`ShareStore`).

Implementations: `local_store.LocalShareStore` (three folders per index) and
`azure_store.AzureShareStore` (three Azure File shares in the index's storage account). The
runtime creates and removes the shares themselves; the store reads and writes what is on them.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO

from provisioning.drivers.base import DriverError, ShareFileMissing
from provisioning.spec import SHARE_CERTS, SHARE_CONFIG, SHARE_PACKAGES, IndexSpec


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
class ShareFile:
    path: str  # relative to the share root, "/"-separated
    size: int
    modified: datetime | None = None


class ShareStore(abc.ABC):
    """Files on the shares of an index. Every method is safe to call again after a failure."""

    name: str = "abstract"

    @abc.abstractmethod
    def write_file(self, spec: IndexSpec, share: str, path: str, source: IO[bytes], *, size: int) -> None:
        """Stream `size` bytes from `source` into `share`/`path`, written under a temporary name
        and renamed, so a half-written file is never visible. Creates parent folders.
        Raises DriverError."""

    @abc.abstractmethod
    def read_file(self, spec: IndexSpec, share: str, path: str) -> Iterator[bytes]:
        """Yield the file's bytes in chunks. Raises ShareFileMissing if it is not there, or
        DriverError."""

    @abc.abstractmethod
    def list_files(self, spec: IndexSpec, share: str, prefix: str = "") -> list[ShareFile]:
        """Every file below `prefix` in the share (recursive), temporary upload files excluded."""

    @abc.abstractmethod
    def delete_file(self, spec: IndexSpec, share: str, path: str) -> None:
        """Delete one file; deleting a file that is already gone is not an error."""

    def write_local_file(self, spec: IndexSpec, share: str, path: str, local: Path, *, size: int) -> None:
        """Store a file the caller holds on this machine's disk (`size` bytes), as `write_file`.
        The caller may delete `local` afterwards but must not change it: a store on the same
        disk may keep its bytes (a hard link) instead of copying them."""
        try:
            source = open(local, "rb")  # noqa: SIM115 - closed below, after the write
        except OSError as exc:
            raise DriverError(f"{local} cannot be read: {exc.strerror or exc}.", permanent=True) from exc
        with source:
            self.write_file(spec, share, path, source, size=size)

    def write_if_changed(self, spec: IndexSpec, share: str, path: str, data: bytes) -> bool:
        """Write `data` unless the file already holds exactly that; True when it wrote.
        Keeps retries from rewriting configuration and credential files. Raises DriverError."""
        try:
            if b"".join(self.read_file(spec, share, path)) == data:
                return False
        except ShareFileMissing:
            pass
        self.write_file(spec, share, path, io.BytesIO(data), size=len(data))
        return True

    def write_config(self, spec: IndexSpec) -> None:
        """Write the spec's configuration files to the config share: definitions when they
        differ, the portal's state files (manifest, tokens) only when missing, so a retry never
        resets what the portal wrote since. Raises DriverError."""
        for config in spec.config_files:
            if config.replace:
                self.write_if_changed(spec, SHARE_CONFIG, config.path, config.content)
                continue
            try:
                self.read_file(spec, SHARE_CONFIG, config.path).close()  # raises when it is missing
            except ShareFileMissing:
                self.write_file(spec, SHARE_CONFIG, config.path, io.BytesIO(config.content), size=len(config.content))
