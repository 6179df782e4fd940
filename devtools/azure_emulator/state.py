"""What the emulator holds: resource groups, storage accounts with their shares and files,
container groups, long-running operations and issued tokens. All in memory, behind one lock."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def new_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def public_definition(definition: dict) -> dict:
    """A container group's properties as Azure shows them: volume keys and secure environment
    values are write-only and never come back."""
    out = copy.deepcopy(definition)
    for volume in out.get("volumes") or []:
        (volume.get("azureFile") or {}).pop("storageAccountKey", None)
    for credential in out.get("imageRegistryCredentials") or []:
        credential.pop("password", None)
    for container in out.get("containers") or []:
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            variable.pop("secureValue", None)
    return out


class StoredFile:
    """One file of a share, on disk: the File service and the containers' processes read and
    write the same bytes. Its ETag and Last-Modified come from the file's modification time."""

    def __init__(self, path: Path, share: FileShare) -> None:
        self.path = path
        self._share = share

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @property
    def last_modified(self) -> float:
        return self.path.stat().st_mtime

    @property
    def etag(self) -> str:
        return f'"0x{self.path.stat().st_mtime_ns:X}"'

    @property
    def content_type(self) -> str:
        return self._share.content_types.get(self._share.relative(self.path), "application/octet-stream")

    def read(self, start: int, end: int) -> bytes:
        with self.path.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start + 1)

    def write(self, start: int, data: bytes) -> None:
        with self.path.open("r+b") as handle:
            handle.seek(start)
            handle.write(data)

    def touch(self) -> None:
        os.utime(self.path)


class FileShare:
    """A share as a folder under the emulator's storage folder. `files` and `directories` are
    read-only views of what is on disk; changes go through the methods below."""

    def __init__(self, name: str, root: Path, *, quota_gb: int = 5120, protocols: str = "SMB") -> None:
        self.name = name
        self.root = root
        self.quota_gb = quota_gb
        self.protocols = protocols
        self.created = time.time()
        self.etag = f'"0x{time.time_ns():X}"'
        self.content_types: dict[str, str] = {}
        root.mkdir(parents=True, exist_ok=True)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _walk(self) -> Iterator[tuple[str, bool]]:
        """(relative path, is a directory) for everything below the root."""
        for folder, dirnames, filenames in os.walk(self.root):
            base = Path(folder)
            for name in dirnames:
                yield self.relative(base / name), True
            for name in filenames:
                yield self.relative(base / name), False

    @property
    def files(self) -> dict[str, StoredFile]:
        return {path: StoredFile(self.root / path, self) for path, is_dir in self._walk() if not is_dir}

    @property
    def directories(self) -> set[str]:
        return {path for path, is_dir in self._walk() if is_dir}

    def file(self, path: str) -> StoredFile | None:
        target = self.root / path
        return StoredFile(target, self) if target.is_file() else None

    def is_directory(self, path: str) -> bool:
        return (self.root / path).is_dir()

    def create_file(self, path: str, size: int, content_type: str) -> StoredFile:
        target = self.root / path
        with target.open("wb") as handle:
            handle.truncate(size)
        self.content_types[path] = content_type
        return StoredFile(target, self)

    def delete_file(self, path: str) -> None:
        (self.root / path).unlink()
        self.content_types.pop(path, None)

    def rename_file(self, source: str, path: str) -> StoredFile:
        os.replace(self.root / source, self.root / path)
        if source in self.content_types:
            self.content_types[path] = self.content_types.pop(source)
        return StoredFile(self.root / path, self)

    def make_directory(self, path: str) -> None:
        (self.root / path).mkdir()

    def remove_directory(self, path: str) -> None:
        (self.root / path).rmdir()

    def used_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


@dataclass
class StorageAccount:
    subscription: str
    resource_group: str
    name: str
    location: str
    sku: str
    kind: str
    tags: dict[str, str]
    properties: dict  # the writable properties as last sent
    keys: list[str] = field(default_factory=lambda: [new_key(), new_key()])
    shares: dict[str, FileShare] = field(default_factory=dict)
    created: str = ""
    pending_polls: int = 0  # GETs of the create operation still answered 202

    @property
    def provisioning_state(self) -> str:
        return "Creating" if self.pending_polls > 0 else "Succeeded"


@dataclass
class ContainerGroup:
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str]
    definition: dict  # the "properties" object as sent (with the volume keys)
    pending_polls: int = 0
    failure: str = ""  # set when the deployment failed
    stopped: bool = False
    restart_counts: dict[str, int] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    started: str = ""
    generation: int = 1  # bumped by a changed definition, so tests can see updates
    identity: dict = field(default_factory=dict)  # the "identity" object as sent
    fqdn: str = ""  # chosen by ARM from the label and its reuse scope
    restart_pending: bool = False  # restarted, but not visible yet
    restart_polls: int = 0  # GETs still answered with the state from before the restart
    stalled: str = ""  # why the deployment hangs (an Azure Files mount that fails)
    crash_loops: dict[str, str] = field(default_factory=dict)  # container -> what it prints before exiting
    logs: dict[str, list[str]] = field(default_factory=dict)  # container -> output lines


@dataclass
class Operation:
    kind: str  # storage-create | cg | rg-delete
    target: tuple
    status: str = "InProgress"
    error: dict | None = None
    polls_left: int = 0


@dataclass
class Token:
    client_id: str
    expires: float


class EmulatorState:
    def __init__(self, storage_dir: Path | None = None) -> None:
        self.lock = threading.RLock()
        # The file shares' folders (one per share, named at random so a share created again
        # under an old name starts empty).
        self.storage_dir = storage_dir or Path(tempfile.mkdtemp(prefix="azure-emulator-files-"))
        self.reset()

    def new_share(self, name: str, *, quota_gb: int, protocols: str = "SMB") -> FileShare:
        return FileShare(name, self.storage_dir / uuid.uuid4().hex, quota_gb=quota_gb, protocols=protocols)

    def sweep_storage(self) -> None:
        """Remove the folders of shares that no longer exist (deleted with their share, their
        account or their resource group)."""
        with self.lock:
            live = {share.root.name for account in self.storage_accounts.values() for share in account.shares.values()}
            if not self.storage_dir.is_dir():
                return
            for folder in self.storage_dir.iterdir():
                if folder.name not in live:
                    shutil.rmtree(folder, ignore_errors=True)

    def remove_storage(self) -> None:
        shutil.rmtree(self.storage_dir, ignore_errors=True)

    def reset(self) -> None:
        with self.lock:
            self.resource_groups: dict[tuple[str, str], dict] = {}
            self.storage_accounts: dict[str, StorageAccount] = {}  # names are global
            self.container_groups: dict[tuple[str, str, str], ContainerGroup] = {}
            self.operations: dict[str, Operation] = {}
            self.tokens: dict[str, Token] = {}
            # Storage account names owned by someone else in the world.
            self.taken_storage_names: set[str] = set()
            # Actions the service principal may not perform, e.g.
            # "Microsoft.ContainerInstance/containerGroups/write".
            self.denied_actions: set[str] = set()
            # Container cores allowed per region (None: unlimited).
            self.core_quota: float | None = None
            # Container group name (or "*") -> message: that deployment fails.
            self.group_failures: dict[str, str] = {}
            # How many polls a long-running operation answers "in progress".
            self.storage_polls = 1
            self.group_polls = 1
            self.clients: dict[str, str] = {}  # client id -> secret
            self.tenant_id = ""
            # Registries that throttle anonymous pulls, e.g. {"docker.io"}: a group pulling from
            # them without imageRegistryCredentials gets 409 RegistryErrorResponse.
            self.throttled_registries: set[str] = set()
            # Resource provider namespaces the subscription is not registered for.
            self.unregistered_providers: set[str] = set()
            # DNS name labels (region-wide, Unsecure scope) held by someone else in the world.
            self.taken_dns_labels: set[str] = set()
            # Container name -> what it prints before it exits: that container crash-loops.
            self.crash_loops: dict[str, str] = {}
            # GETs after a restart that still show the state from before it.
            self.restart_polls = 1
        self.sweep_storage()

    # --- Helpers used by both services.
    def account(self, name: str) -> StorageAccount | None:
        return self.storage_accounts.get(name.lower())

    def snapshot(self) -> dict:
        """A comparable picture of everything held (no secrets, no tokens)."""
        with self.lock:
            return {
                "resource_groups": {f"{s}/{rg}": copy.deepcopy(v) for (s, rg), v in self.resource_groups.items()},
                "storage_accounts": {
                    name: {
                        "resource_group": a.resource_group,
                        "location": a.location,
                        "sku": a.sku,
                        "kind": a.kind,
                        "tags": dict(a.tags),
                        "properties": copy.deepcopy(a.properties),
                        "shares": {
                            s.name: {
                                "quota_gb": s.quota_gb,
                                "directories": sorted(s.directories),
                                "files": {
                                    p: {
                                        "sha256": hashlib.sha256(f.data).hexdigest(),
                                        "etag": f.etag,
                                    }
                                    for p, f in sorted(s.files.items())
                                },
                            }
                            for s in a.shares.values()
                        },
                    }
                    for name, a in sorted(self.storage_accounts.items())
                },
                "container_groups": {
                    "/".join(key): {
                        "tags": dict(g.tags),
                        "definition": public_definition(g.definition),
                        "generation": g.generation,
                        "restart_counts": dict(g.restart_counts),
                        "failure": g.failure,
                        "fqdn": g.fqdn,
                    }
                    for key, g in sorted(self.container_groups.items())
                },
            }
